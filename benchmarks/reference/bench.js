// Side-by-side record fan-out benchmark over the real deepstream client.
// usage: node bench.js HOST:PORT/PATH   env: SUBS RECORDS UPDATES RATE SECONDS
// Phase 1 (throughput): the writer patches RECORDS records UPDATES times, as fast as the
// client sends; every subscriber holds every record, so each update is delivered SUBS times.
// Phase 2 (latency): paced at RATE updates/s for SECONDS; latency = receive time - send time.
// Prints "PHASE <name>" lines at phase boundaries (benchmarks/fanout.py samples server CPU there),
// then one JSON line.
const { DeepstreamClient } = require('@deepstream/client')
const url = process.argv[2] || 'localhost:6020/deepstream'
const SUBS = +(process.env.SUBS || 20), RECORDS = +(process.env.RECORDS || 10)
const UPDATES = +(process.env.UPDATES || 20000), RATE = +(process.env.RATE || 2000), SECONDS = +(process.env.SECONDS || 5)
const opts = { subscriptionInterval: 5, offlineEnabled: false, maxReconnectAttempts: 0 }
const now = () => Number(process.hrtime.bigint()) / 1e6
const sleep = ms => new Promise(r => setTimeout(r, ms))

async function client() { const c = new DeepstreamClient(url, opts); await c.login({}); return c }

async function main() {
  const tag = 'bench/' + Math.random().toString(36).slice(2, 8) + '/'
  const writer = await client()
  const subs = []
  for (let i = 0; i < SUBS; i++) subs.push(await client())
  let received = 0, phase = 'warm', lat = []
  const names = Array.from({ length: RECORDS }, (_, i) => tag + i)
  // every subscriber gets every record at once (sequential whenReady() costs ~50 ms each)
  await Promise.all(subs.flatMap(s => names.map(async n => {
    const r = s.record.getRecord(n); await r.whenReady()
    r.subscribe('v', v => { if (!v) return; received++; if (phase === 'lat') lat.push(now() - v.t) }, false)
  })))
  const recs = []
  for (const n of names) { const r = writer.record.getRecord(n); await r.whenReady(); recs.push(r) }
  await sleep(500)
  // throughput
  phase = 'tp'; received = 0
  const expected = UPDATES * SUBS
  console.log('PHASE tp')
  const t0 = now()
  for (let i = 0; i < UPDATES; i++) {
    recs[i % RECORDS].set('v', { n: i, t: now() })
    if (i % 500 === 499) await new Promise(setImmediate)
  }
  const tSent = now()
  while (received < expected && now() - t0 < 120000) await sleep(5)
  const t1 = now()
  console.log('PHASE tp-end')
  const tp = { deliveries: received, expected, seconds: (t1 - t0) / 1000, send_seconds: (tSent - t0) / 1000 }
  await sleep(300)
  // latency
  phase = 'lat'; received = 0
  console.log('PHASE lat')
  const total = RATE * SECONDS, start = now()
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE
    while (now() < due) await sleep(1)
    recs[i % RECORDS].set('v', { n: 'l' + i, t: now() })
  }
  // late is not lost: on a loaded machine deliveries trail the last send by seconds; wait
  // for all of them until none has come for 2 s (at most 60 s)
  const latEnd = now(); let seen = -1, quietSince = now()
  while (received < total * SUBS && now() - quietSince < 2000 && now() - latEnd < 60000) {
    if (received !== seen) { seen = received; quietSince = now() }
    await sleep(20)
  }
  await sleep(200)
  console.log('PHASE lat-end')
  lat.sort((a, b) => a - b)
  const pct = p => lat.length ? +lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(3) : null
  console.log(JSON.stringify({
    url, subs: SUBS, records: RECORDS, updates: UPDATES,
    deliveries_per_s: Math.round(tp.deliveries / tp.seconds), updates_per_s: Math.round(UPDATES / tp.seconds),
    delivered: tp.deliveries, expected, lat_rate: RATE, lat_samples: lat.length, lat_expected: total * SUBS,
    lat_p50_ms: pct(0.5), lat_p99_ms: pct(0.99), lat_max_ms: pct(1),
  }))
  writer.close(); subs.forEach(s => s.close())
  setTimeout(() => process.exit(0), 200)
}
main().catch(e => { console.error(e); process.exit(1) })
