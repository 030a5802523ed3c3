'use strict'
// Record names holding U+0000 on storage that cannot hold it (PostgreSQL): every call naming such
// a record is answered at once with an error the official client routes to that call (none
// waits for a timeout), and the client goes on working.
const { connect, run, outcome, unique, sleep } = require('./lib')

/** The outcome of `promise`, or `{error: 'NO ANSWER'}` after `ms` (a call nobody answers). */
const within = (promise, ms = 3000) =>
  outcome(Promise.race([promise, sleep(ms).then(() => { throw new Error('NO ANSWER') })]))

run(async () => {
  const client = await connect()
  const bad = `${unique('nul')}\u0000b`
  const good = unique('ok')
  const setWithAck = await within(client.record.setDataWithAck(bad, { a: 1 }))
  const snapshot = await within(client.record.snapshot(bad))
  const has = await within(client.record.has(bad))
  const head = await within(client.record.head(bad))
  const record = client.record.getRecord(bad)
  const ready = await within(record.whenReady(), 1500)
  const after = await within(client.record.setDataWithAck(good, { a: 2 }).then(() => client.record.snapshot(good)))
  return { setWithAck, snapshot, has, head, ready, after }
})
