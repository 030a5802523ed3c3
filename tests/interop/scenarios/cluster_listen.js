'use strict'
// Listening across a cluster seen by the official client (events): args[0] lists the three
// nodes' urls. A listener on one node is offered subscriptions made on others (made before or
// after it listened), one provider per name cluster-wide, REMOVED only when the last
// subscriber anywhere leaves; then the scenario prints KILL-NODE1 and waits until the test has
// SIGKILLed node 1, whose listener provided a name: the listener on node 2 must be offered it.
const { args, connect, recorder, settle, run, unique, waitFor, sleep, handshake } = require('./lib')

run(async () => {
  const urls = args[0].split(',')
  const base = unique('clisten')
  const out = {}
  const travel = () => sleep(400) // notices through Redis to the other nodes

  // -- a listener on node 1, a subscriber on node 2, then another on node 0 --------------------
  const listenerA = await connect({ username: 'la' }, {}, urls[1])
  const foundA = []
  const stoppedA = []
  listenerA.event.listen(`${base}/a/.*`, (name, response) => {
    foundA.push(name)
    response.onStop((stopped) => stoppedA.push(stopped))
    response.accept()
    listenerA.event.emit(name, `provided ${name}`) // an active provider publishes on demand
  })
  await settle()
  await travel()
  const onTwo = await connect({ username: 's2' }, {}, urls[2])
  const got = recorder()
  onTwo.event.subscribe(`${base}/a/x`, got)
  await waitFor('the listener on node 1 to be offered the name', () => foundA.length === 1, 5000)
  await got.count(1, 'the provided event', 5000)
  const onZero = await connect({ username: 's0' }, {}, urls[0])
  onZero.event.subscribe(`${base}/a/x`, () => {})
  await settle()
  await travel()
  onTwo.event.unsubscribe(`${base}/a/x`, got) // node 0 still subscribes: no REMOVED
  await settle()
  await travel()
  out.a = { found: foundA.slice(), received: got.calls, stoppedWhileSubscribed: stoppedA.slice() }
  onZero.event.unsubscribe(`${base}/a/x`)
  await waitFor('REMOVED after the last subscriber anywhere left', () => stoppedA.length === 1, 5000)
  await sleep(300)
  out.a.stopped = stoppedA.slice()
  out.a.foundAfter = foundA.length

  // -- a subscription made before the listener, on another node ------------------------------
  onZero.event.subscribe(`${base}/b/early`, () => {})
  await settle()
  const listenerB = await connect({ username: 'lb' }, {}, urls[2])
  const foundB = []
  listenerB.event.listen(`${base}/b/.*`, (name, response) => { foundB.push(name); response.accept() })
  await waitFor('the earlier subscription on node 0 to be offered', () => foundB.length === 1, 5000)
  out.b = foundB.slice()

  // -- two listeners on different nodes, names subscribed on all three: one provider each -----
  const active = {}
  const offered = {}
  const listeners = []
  for (const i of [1, 2]) {
    const client = await connect({ username: `lc${i}` }, {}, urls[i])
    client.event.listen(`${base}/c/.*`, (name, response) => {
      offered[name] = (offered[name] || 0) + 1
      active[name] = (active[name] || []).concat([i])
      response.onStop(() => { active[name] = active[name].filter((j) => j !== i) })
      response.accept()
    })
    listeners.push(client)
  }
  await settle()
  await travel()
  const names = []
  for (let n = 0; n < 6; n++) {
    const name = `${base}/c/${n}`
    names.push(name)
    for (const target of urls) {
      const client = await connect({ username: `sc${n}` }, {}, target)
      client.event.subscribe(name, () => {})
    }
  }
  await waitFor('every name to have a provider', () => names.every((name) => (active[name] || []).length > 0), 8000)
  await sleep(1000) // a second provider, if any, would have been found by now
  out.c = names.map((name) => ({ offered: offered[name], active: active[name].length }))

  // -- records: a listener on node 1, subscribers on nodes 2 and 0 see hasProvider -----------
  const recordListener = await connect({ username: 'lr' }, {}, urls[1])
  const foundR = []
  const stoppedR = []
  recordListener.record.listen(`${base}/r/.*`, (name, response) => {
    foundR.push(name)
    response.onStop((stopped) => stoppedR.push(stopped))
    response.accept()
  })
  await settle()
  await travel()
  const recordTwo = await connect({ username: 'sr2' }, { recordDiscardTimeout: 20 }, urls[2])
  const recordZero = await connect({ username: 'sr0' }, { recordDiscardTimeout: 20 }, urls[0])
  const onNodeTwo = recordTwo.record.getRecord(`${base}/r/x`)
  await onNodeTwo.whenReady()
  await waitFor('the record listener on node 1 to be offered the record', () => foundR.length === 1, 5000)
  await waitFor('the subscriber on node 2 to see a provider', () => onNodeTwo.hasProvider, 5000)
  const onNodeZero = recordZero.record.getRecord(`${base}/r/x`) // subscribed after the accept
  await onNodeZero.whenReady()
  await waitFor('the later subscriber on node 0 to see a provider', () => onNodeZero.hasProvider, 5000)
  onNodeTwo.discard()
  await settle()
  await travel()
  out.r = { found: foundR.slice(), stoppedWhileSubscribed: stoppedR.slice() }
  onNodeZero.discard()
  await waitFor('the record provider to be told to stop', () => stoppedR.length === 1, 5000)
  out.r.stopped = stoppedR.slice()

  // -- the providing listener's node dies ----------------------------------------------------
  const foundD = { 1: [], 2: [] }
  let killed = false
  const d1 = await connect({ username: 'ld1' }, {}, urls[1])
  d1.event.listen(`${base}/d/.*`, (name, response) => { foundD[1].push(name); response.accept() })
  const d2 = await connect({ username: 'ld2' }, {}, urls[2])
  d2.event.listen(`${base}/d/.*`, (name, response) => {
    foundD[2].push(name)
    if (killed) response.accept()
    else response.reject()
  }) // so the listener on node 1 provides, whichever is asked first
  await settle()
  await travel()
  const dSubscriber = await connect({ username: 'sd' }, {}, urls[0])
  dSubscriber.event.subscribe(`${base}/d/z`, () => {})
  await waitFor('node 1 to provide', () => foundD[1].length === 1, 5000)
  await sleep(300)
  out.dBefore = { 1: foundD[1].length, 2: foundD[2].length }
  await handshake('KILL-NODE1')
  killed = true
  const killedAt = Date.now()
  const offersOnTwo = foundD[2].length
  await waitFor('the listener on node 2 to be offered the name', () => foundD[2].length > offersOnTwo, 10000)
  out.dAfter = { ms: Date.now() - killedAt, names: foundD[2].slice() }
  return out
})
