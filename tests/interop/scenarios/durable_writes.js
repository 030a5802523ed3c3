'use strict'
// Durability across a crash of the server, with the official client's write acknowledgements.
//   write PREFIX N: N records written once each, and PREFIX-hot written 10 times in a row, every
//                   write with setDataWithAck; reports each acknowledged write (name -> data).
//   read PREFIX N:  reads the same names back (snapshot and head), e.g. after a restart.
const { connect, run, outcome, args } = require('./lib')

const [mode, prefix, countText] = args
const count = Number(countText)
const names = Array.from({ length: count }, (_, i) => `${prefix}/${i}`)
const hot = `${prefix}-hot`

run(async () => {
  const client = await connect()
  if (mode === 'write') {
    const acked = {}
    const writes = names.map(async (name, i) => {
      const data = { i, text: 'ü/"\'', nested: { list: [i, null, true, 1.5] } }
      const result = await outcome(client.record.setDataWithAck(name, data))
      if (!('error' in result)) acked[name] = data
    })
    for (let v = 1; v <= 10; v++) {
      const result = await outcome(client.record.setDataWithAck(hot, { v }))
      if (!('error' in result)) acked[hot] = { v }
    }
    await Promise.all(writes)
    return { acked }
  }
  if (mode === 'read') {
    const found = {}
    for (const name of [...names, hot]) {
      const snapshot = await outcome(client.record.snapshot(name))
      const head = await outcome(client.record.head(name))
      found[name] = { data: snapshot.ok ?? null, version: head.ok ?? null, error: snapshot.error || head.error || null }
    }
    return { found }
  }
  throw new Error(`unknown mode ${mode}`)
})
