'use strict'
// Data no backend can store: the official client sends lone UTF-16 surrogates (what
// JSON.stringify writes for a string cut inside an emoji) and gets an error, while the record
// stays readable and writable. A record that storage holds with a number beyond a double (put
// there behind the server's back by the driving test) is answered with an error, never with
// `Infinity`, which would crash this client's JSON parser.
// Protocol with the driving test: prints `BAD-DATA <record> <stored>`, waits for a line on stdin
// once the test has sent its raw frames and changed <stored> in storage, then prints its result.
const { connect, run, outcome, unique, handshake, sleep, recorder, settle } = require('./lib')

run(async () => {
  const a = await connect()
  const b = await connect()
  const name = unique('bad-data')
  const stored = unique('stored')
  const record = a.record.getRecord(name)
  await record.whenReady()
  const first = await outcome(record.setWithAck({ ok: 1 }))
  const cutEmoji = '😀'.slice(0, 1) // a lone high surrogate
  const surrogateWhole = await outcome(record.setWithAck({ text: `cut ${cutEmoji}` }))
  const surrogatePath = await outcome(record.setWithAck('text', '\udc00'))
  const surrogateKey = await outcome(record.setWithAck({ [cutEmoji]: 1 }))
  const afterRefusals = await outcome(b.record.snapshot(name))
  // A name cut inside an emoji: refused too. (Routed back by correlation id: the client reads
  // the echoed name as U+FFFD, so a read by such a name cannot be answered in a way it routes.)
  const surrogateName = await outcome(b.record.setDataWithAck(`name ${cutEmoji}`, { a: 1 }))
  await outcome(a.record.setDataWithAck(stored, { n: 1 }))
  const events = recorder() // the test emits non-JSON event data here, then one good event
  b.event.subscribe(name, events)
  await settle()

  await handshake(`BAD-DATA ${name} ${stored}`)
  const storedSnapshot = await outcome(b.record.snapshot(stored))
  const storedRecord = b.record.getRecord(stored)
  await sleep(300) // an error event, never data, arrives for it
  // Writable still, by another client. (The writer's own handle applied its refused writes
  // locally and counted their versions, as the client does for any refused write, denials
  // included, so its next write from that handle is INVALID_VERSION until it is re-read.)
  const second = await outcome(b.record.setDataWithAck(name, { ok: 2 }))
  const fresh = b.record.getRecord(name)
  await fresh.whenReady()
  const reread = fresh.get()
  await events.count(1, 'the good event')
  return {
    first,
    surrogateWhole,
    surrogatePath,
    surrogateKey,
    surrogateName,
    afterRefusals,
    storedSnapshot,
    storedRecordData: storedRecord.isReady ? storedRecord.get() : 'not ready',
    reread,
    second,
    events: events.calls,
    final: await outcome(b.record.snapshot(name))
  }
})
