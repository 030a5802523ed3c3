'use strict'
// Lists: getList, addEntry (append and at an index), removeEntry, setEntries, seen by a second client.
const { connect, recorder, settle, run, outcome, unique, waitFor } = require('./lib')

run(async () => {
  const a = await connect()
  const b = await connect()
  const name = unique('list')

  const la = a.record.getList(name)
  await la.whenReady()
  const lb = b.record.getList(name)
  await lb.whenReady()
  const seen = recorder()
  lb.subscribe(seen)
  await settle()
  const out = { initial: { entries: la.getEntries(), empty: la.isEmpty() } }

  la.addEntry('x')
  la.addEntry('y')
  la.addEntry('z', 0)
  await waitFor('b to see three entries', () => lb.getEntries().length === 3)
  out.afterAdd = lb.getEntries()
  la.removeEntry('x')
  await waitFor('b to see the removal', () => lb.getEntries().length === 2)
  out.afterRemove = lb.getEntries()
  out.setEntriesWithAck = await outcome(lb.setEntriesWithAck(['p', 'q', 'r']))
  await waitFor('a to see the replacement', () => la.getEntries().length === 3)
  out.aEntries = la.getEntries()
  out.versions = [la.version, lb.version]
  out.snapshot = await outcome(b.record.snapshot(name))
  out.seen = seen.calls.slice()
  return out
})
