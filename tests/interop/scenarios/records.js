'use strict'
// Records: read/create, whole and path writes, erase, subscriptions, snapshot/has/head,
// unsubscribed writes (setData), write acknowledgements, delete and re-create.
const { connect, recorder, settle, run, outcome, callback, unique, waitFor } = require('./lib')

run(async () => {
  const a = await connect()
  const b = await connect()
  const c = await connect()
  const name = unique('rec')
  const missing = unique('missing')
  const out = {}

  const ra = a.record.getRecord(name)
  await ra.whenReady()
  out.created = { version: ra.version, data: ra.get() }

  const rb = b.record.getRecord(name)
  await rb.whenReady()
  const whole = recorder()
  const byPath = recorder()
  const deleted = recorder()
  rb.subscribe(whole)
  rb.subscribe('profile.name', byPath)
  rb.on('delete', deleted)
  await settle()

  ra.set({ profile: { name: 'Ann', age: 30 }, tags: ['x'] })
  await whole.count(1, 'whole-record update')
  ra.set('profile.name', 'Bea')
  await byPath.count(2, 'path updates')
  ra.set('profile.age', undefined)
  await whole.count(3, 'erase')
  out.afterWrites = { a: { version: ra.version, data: ra.get() }, b: { version: rb.version, data: rb.get() } }
  out.pathValues = byPath.calls.slice()
  out.pathGet = rb.get('profile.name')

  out.setWithAck = await outcome(ra.setWithAck('tags', ['x', 'y']))
  out.setCallback = await callback((done) => ra.set('count', 1, (error) => done(error)))
  out.setWholeCallback = await callback((done) => ra.set({ replaced: true }, (error) => done(error)))
  await waitFor('b to see the replacement', () => rb.get('replaced') === true)

  out.snapshot = await outcome(c.record.snapshot(name))
  out.has = await outcome(c.record.has(name))
  out.hasMissing = await outcome(c.record.has(missing))
  out.head = await outcome(c.record.head(name))
  out.snapshotMissing = await outcome(c.record.snapshot(missing))

  // c is not subscribed to `name`: these are unsubscribed (forced) writes
  c.record.setData(name, 'by', 'c')
  out.setDataWithAck = await outcome(c.record.setDataWithAck(name, 'via', 'ack'))
  await waitFor('b to see c\'s writes', () => rb.get('by') === 'c' && rb.get('via') === 'ack')
  out.setDataWhole = await outcome(c.record.setDataWithAck(name, { whole: 'c' }))
  await waitFor('b to see c\'s whole write', () => rb.get('whole') === 'c')
  out.afterSetData = { version: rb.version, data: rb.get(), head: await outcome(c.record.head(name)) }

  const fresh = unique('fresh')
  out.setDataCreates = await outcome(c.record.setDataWithAck(fresh, { made: 'by setData' }))
  out.freshSnapshot = await outcome(c.record.snapshot(fresh))
  out.freshHead = await outcome(c.record.head(fresh))

  out.delete = await outcome(ra.delete())
  await deleted.count(1, 'delete event on b')
  out.hasAfterDelete = await outcome(c.record.has(name))

  const again = a.record.getRecord(name)
  await again.whenReady()
  out.recreated = { version: again.version, data: again.get() }
  await again.setWithAck({ second: 'life' })
  out.afterRecreate = { version: again.version, snapshot: await outcome(c.record.snapshot(name)), head: await outcome(c.record.head(name)) }
  return out
})
