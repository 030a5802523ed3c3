// Side-by-side event fan-out benchmark over the real deepstream client (the twin of bench.js).
// usage: node events.js HOST:PORT/PATH   env: SUBS EVENTS EMITS RATE SECONDS
// Every subscriber subscribes to EVENTS event names; one emitter (not subscribed) emits.
// Phase 1 (throughput): EMITS events round-robin over the names, as fast as the client sends;
// each is delivered SUBS times. Phase 2 (latency): paced at RATE emits/s for SECONDS.
// Prints "PHASE <name>" lines at phase boundaries, then one JSON line (same keys as bench.js).
const { DeepstreamClient } = require('@deepstream/client')
const url = process.argv[2] || 'localhost:6020/deepstream'
const SUBS = +(process.env.SUBS || 20), EVENTS = +(process.env.EVENTS || 10)
const EMITS = +(process.env.EMITS || 20000), RATE = +(process.env.RATE || 2000), SECONDS = +(process.env.SECONDS || 5)
const opts = { subscriptionInterval: 5, offlineEnabled: false, maxReconnectAttempts: 0 }
const now = () => Number(process.hrtime.bigint()) / 1e6
const sleep = ms => new Promise(r => setTimeout(r, ms))

async function client() { const c = new DeepstreamClient(url, opts); await c.login({}); return c }

async function main() {
  const tag = 'bench/' + Math.random().toString(36).slice(2, 8) + '/'
  const emitter = await client()
  const subs = []
  for (let i = 0; i < SUBS; i++) subs.push(await client())
  let received = 0, phase = 'warm', lat = []
  const names = Array.from({ length: EVENTS }, (_, i) => tag + i)
  const warm = new Set() // "sub/name" pairs that saw a warm-up event
  subs.forEach((s, k) => names.forEach(n => s.event.subscribe(n, v => {
    if (v.warm) { warm.add(k + '/' + n); return }
    received++; if (phase === 'lat') lat.push(now() - v.t)
  })))
  // Event subscriptions have no acknowledgement in the client API: emit warm-up events until
  // every subscriber has seen one on every name, so every subscription is in place.
  const warmStart = now()
  while (warm.size < SUBS * EVENTS) {
    if (now() - warmStart > 30000) throw new Error(`subscriptions not ready: ${warm.size}`)
    for (const n of names) emitter.event.emit(n, { warm: true })
    await sleep(50)
  }
  await sleep(300)
  // throughput
  phase = 'tp'; received = 0
  const expected = EMITS * SUBS
  console.log('PHASE tp')
  const t0 = now()
  for (let i = 0; i < EMITS; i++) {
    emitter.event.emit(names[i % EVENTS], { n: i, t: now() })
    if (i % 500 === 499) await new Promise(setImmediate)
  }
  while (received < expected && now() - t0 < 120000) await sleep(5)
  const t1 = now()
  console.log('PHASE tp-end')
  const delivered = received
  await sleep(300)
  // latency
  phase = 'lat'; received = 0
  console.log('PHASE lat')
  const total = RATE * SECONDS, start = now()
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE
    while (now() < due) await sleep(1)
    emitter.event.emit(names[i % EVENTS], { n: 'l' + i, t: now() })
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
  const seconds = (t1 - t0) / 1000
  console.log(JSON.stringify({
    url, subs: SUBS, events: EVENTS, emits: EMITS,
    deliveries_per_s: Math.round(delivered / seconds), updates_per_s: Math.round(EMITS / seconds),
    delivered, expected, lat_rate: RATE, lat_samples: lat.length, lat_expected: total * SUBS,
    lat_p50_ms: pct(0.5), lat_p99_ms: pct(0.99), lat_max_ms: pct(1),
  }))
  emitter.close(); subs.forEach(s => s.close())
  setTimeout(() => process.exit(0), 200)
}
main().catch(e => { console.error(e); process.exit(1) })
