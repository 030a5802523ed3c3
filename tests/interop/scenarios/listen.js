'use strict'
// Listening (active providers) on records and events: a provider is told about matching
// subscriptions (existing and new), accepts or rejects them, subscribers see hasProvider, and the
// provider is told when the last subscriber leaves.
const { connect, recorder, settle, run, unique, waitFor, sleep } = require('./lib')

run(async () => {
  const base = unique('listen')
  const provider = await connect()
  // a short discard timeout makes record.discard() unsubscribe promptly
  const subscriber = await connect({}, { recordDiscardTimeout: 20 })
  const out = {}

  // -- records --------------------------------------------------------------------------------
  const early = subscriber.record.getRecord(`${base}/rec/early-accept`)
  await early.whenReady()
  await settle()

  const found = []
  const stopped = []
  provider.record.listen(`${base}/rec/.*`, (name, response) => {
    found.push(name)
    response.onStop((stoppedName) => stopped.push(stoppedName))
    if (name.endsWith('accept')) response.accept()
    else response.reject()
  })
  await waitFor('the provider to learn of the existing subscription', () => found.length === 1)
  await waitFor('early record to have a provider', () => early.hasProvider)

  const accepted = subscriber.record.getRecord(`${base}/rec/late-accept`)
  const rejected = subscriber.record.getRecord(`${base}/rec/late-reject`)
  await Promise.all([accepted.whenReady(), rejected.whenReady()])
  await waitFor('the provider to learn of both new subscriptions', () => found.length === 3)
  await waitFor('late record to have a provider', () => accepted.hasProvider)
  await sleep(100)
  out.records = {
    found: found.slice().sort(),
    hasProvider: { early: early.hasProvider, accepted: accepted.hasProvider, rejected: rejected.hasProvider }
  }

  early.discard()
  await waitFor('the provider to be told to stop', () => stopped.length === 1)
  out.records.stopped = stopped.slice()

  // -- events ---------------------------------------------------------------------------------
  const eventsFound = []
  const eventsStopped = []
  provider.event.listen(`${base}/ev/.*`, (name, response) => {
    eventsFound.push(name)
    response.onStop((stoppedName) => eventsStopped.push(stoppedName))
    if (name.endsWith('accept')) {
      response.accept()
      provider.event.emit(name, `provided ${name}`) // an active provider publishes on demand
    } else {
      response.reject()
    }
  })
  await settle()
  const got = recorder()
  subscriber.event.subscribe(`${base}/ev/accept`, got)
  subscriber.event.subscribe(`${base}/ev/reject`, () => {})
  await got.count(1, 'the provided event')
  await waitFor('both event subscriptions to be found', () => eventsFound.length === 2)
  subscriber.event.unsubscribe(`${base}/ev/accept`, got)
  await waitFor('the event provider to be told to stop', () => eventsStopped.length === 1)
  await sleep(100)
  out.events = { found: eventsFound.slice().sort(), received: got.calls, stopped: eventsStopped.slice() }

  // -- unlisten: the provider is gone, and hears of no new subscriptions -----------------------
  provider.record.unlisten(`${base}/rec/.*`)
  await waitFor('the accepted record to lose its provider', () => !accepted.hasProvider)
  const unheard = subscriber.record.getRecord(`${base}/rec/after-unlisten-accept`)
  await unheard.whenReady()
  await sleep(200)
  out.afterUnlisten = { found: found.length, hasProvider: unheard.hasProvider }
  return out
})
