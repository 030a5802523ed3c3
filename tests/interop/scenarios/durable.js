'use strict'
// Acknowledged writes for a durability test: `durable.js URL write PREFIX N` writes N records
// and one record N times, every write with setWithAck, and prints what was acknowledged;
// `durable.js URL read PREFIX N` prints what the server holds for the same names.
const { connect, outcome, run, args } = require('./lib')

const [mode, prefix, countText] = args
const count = Number(countText)
const names = Array.from({ length: count }, (_, i) => `${prefix}/${i}`)
const hot = `${prefix}/hot`

run(async () => {
  const client = await connect()
  if (mode === 'read') {
    const read = {}
    for (const name of [...names, hot]) {
      read[name] = { version: await client.record.head(name), data: await client.record.snapshot(name) }
    }
    return { read }
  }
  const acked = {}
  const failed = {}
  const note = (name, record, result) => {
    if ('ok' in result) acked[name] = { version: record.version, data: record.get() }
    else failed[name] = result.error
  }
  await Promise.all(names.map(async (name, i) => {
    const record = client.record.getRecord(name)
    await record.whenReady()
    note(name, record, await outcome(record.setWithAck({ i, text: 'ü/"\'{}:', big: 2 ** 53 - 1 })))
  }))
  const record = client.record.getRecord(hot)
  await record.whenReady()
  for (let n = 1; n <= 10; n++) note(hot, record, await outcome(record.setWithAck('n', n)))
  return { acked, failed }
})
