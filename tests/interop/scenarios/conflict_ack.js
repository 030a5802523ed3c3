'use strict'
// storage-wins: a write acknowledgement is a promise that the write is stored. When storage
// holds a newer version (written behind the server's back by the driving test) and the
// server's unflushed write is dropped for it, setWithAck rejects and a set callback gets the
// error; the client then receives storage's version and writes on top of it.
// Protocol with the driving test: prints `CHANGE-ROWS <a> <b>`, waits for a line on stdin once
// the test has written version 5 of both records into storage, then prints its result.
const { connect, run, outcome, unique, handshake, waitFor, callback } = require('./lib')

run(async () => {
  const client = await connect()
  const names = [unique('conflict'), unique('conflict')]
  const [first, second] = names.map((name) => client.record.getRecord(name))
  await Promise.all([first.whenReady(), second.whenReady()])
  const before = [await outcome(first.setWithAck({ a: 1 })), await outcome(second.setWithAck({ a: 1 }))]

  await handshake(`CHANGE-ROWS ${names.join(' ')}`)
  const promised = await outcome(first.setWithAck({ a: 2 }))
  const called = await callback((done) => second.set({ a: 2 }, done))
  await waitFor('storage\'s version to reach the client', () => first.version === 5 && second.version === 5)
  const adopted = [first.get(), second.get()]
  const after = await outcome(first.setWithAck({ a: 3 }))
  return {
    before,
    promised,
    called: called.error,
    adopted,
    after,
    server: await outcome(client.record.snapshot(names[0])),
    head: await outcome(client.record.head(names[0])),
    names
  }
})
