// The writer for benchmarks/records.py: the official client holding PREFIX + 0 .. RECORDS - 1.
// usage: node writer.js URL   env: PREFIX RECORDS
// Prints READY once it holds every record. Commands on stdin, one a line:
//   burst N       N updates to random records, as fast as the client sends
//   paced R S     R updates/s to random records for S seconds
//   quit
// After each phase: "SENT <updates> <start ms> <end ms>", then "HITS [updates per record]".
// Each update sets path "t" to the send time (process.hrtime in ms, the subscribers' clock).
const { DeepstreamClient } = require('@deepstream/client')
const url = process.argv[2]
const PREFIX = process.env.PREFIX, RECORDS = +process.env.RECORDS
const opts = { offlineEnabled: false, maxReconnectAttempts: 0 }
const now = () => Number(process.hrtime.bigint()) / 1e6
const sleep = ms => new Promise(r => setTimeout(r, ms))

async function main () {
  const client = new DeepstreamClient(url, opts)
  await client.login({})
  const recs = []
  for (let i = 0; i < RECORDS; i += 500) {
    const batch = []
    for (let j = i; j < Math.min(RECORDS, i + 500); j++) {
      const r = client.record.getRecord(PREFIX + j); batch.push(r.whenReady()); recs.push(r)
    }
    await Promise.all(batch)
  }
  let hits
  const pick = () => { const i = Math.floor(Math.random() * recs.length); hits[i]++; return recs[i] }
  console.log('READY')
  const lines = require('readline').createInterface({ input: process.stdin })
  for await (const line of lines) {
    const [cmd, a, b] = line.trim().split(' ')
    hits = new Array(recs.length).fill(0)
    const start = now()
    if (cmd === 'burst') {
      for (let i = 0; i < +a; i++) {
        pick().set('t', now())
        if (i % 500 === 499) await new Promise(setImmediate)
      }
      console.log(`SENT ${a} ${start} ${now()}`)
    } else if (cmd === 'paced') {
      const total = Math.round(+a * +b)
      for (let i = 0; i < total; i++) {
        const due = start + (i * 1000) / +a
        while (now() < due) await sleep(1)
        pick().set('t', now())
      }
      console.log(`SENT ${total} ${start} ${now()}`)
    } else if (cmd === 'quit') break
    console.log(`HITS ${JSON.stringify(hits)}`)
  }
  client.close()
  setTimeout(() => process.exit(0), 200)
}
main().catch(e => { console.error(e); process.exit(1) })
