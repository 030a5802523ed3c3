'use strict'
// Events: subscribe, emit every JSON type, no echo to the emitter, unsubscribe stops delivery.
const { connect, recorder, settle, run, unique } = require('./lib')

run(async () => {
  const emitter = await connect()
  const listener = await connect()
  const name = unique('news')
  const barrier = unique('barrier')

  const got = recorder()
  const gotBarrier = recorder()
  const own = recorder()
  listener.event.subscribe(name, got)
  listener.event.subscribe(barrier, gotBarrier)
  emitter.event.subscribe(name, own)
  await settle()

  const payloads = [{ hello: 'world', nested: { list: [1, 2.5, null] } }, 'text', 42, true, null, ['a']]
  for (const data of payloads) emitter.event.emit(name, data)
  emitter.event.emit(unique('nobody-listens'), 'ignored')
  await got.count(payloads.length, 'events')

  listener.event.unsubscribe(name, got)
  await settle()
  emitter.event.emit(name, 'after unsubscribe')
  emitter.event.emit(barrier, 'done') // arrives after anything emitted before it
  await gotBarrier.count(1, 'barrier event')

  return { received: got.calls, ownReceived: own.calls, barrier: gotBarrier.calls }
})
