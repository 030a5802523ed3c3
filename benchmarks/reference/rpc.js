// RPC round trips over the real deepstream client: one provider, one requester.
// usage: node rpc.js HOST:PORT/PATH   env: REQUESTS IN_FLIGHT
// The requester keeps IN_FLIGHT requests outstanding until REQUESTS have been answered; the
// provider answers each with its data (the client accepts it first, as it does by default).
// Prints "PHASE rpc" / "PHASE rpc-end" around the measured part, then one JSON line (with
// this process's CPU time per round trip).
const { DeepstreamClient } = require('@deepstream/client')
const url = process.argv[2] || 'localhost:6020/deepstream'
const { REQUESTS, now, measure } = require('./rpcmeasure')
const opts = { offlineEnabled: false, maxReconnectAttempts: 0, rpc: { responseTimeout: 60000 } }
const sleep = ms => new Promise(r => setTimeout(r, ms))

async function client() { const c = new DeepstreamClient(url, opts); await c.login({}); return c }

async function main() {
  const name = 'bench/' + Math.random().toString(36).slice(2, 8)
  const provider = await client(), requester = await client()
  provider.rpc.provide(name, (data, response) => response.send(data))
  await sleep(300)
  let sent = 0, answered = 0, failed = 0, done
  const finished = new Promise(r => { done = r })
  const lat = []
  const one = () => {
    const i = sent++, t = now()
    requester.rpc.make(name, { i }, (err) => {
      if (err) failed++
      answered++; lat.push(now() - t)
      if (sent < REQUESTS) one()
      else if (answered === REQUESTS) done()
    })
  }
  // warm-up, not measured
  await new Promise(r => { let n = 0; for (let i = 0; i < 200; i++) requester.rpc.make(name, i, () => { if (++n === 200) r() }) })
  await measure({ url, request: one, finished, lat, counts: () => ({ answered, failed }) })
  provider.close(); requester.close()
  setTimeout(() => process.exit(0), 200)
}
main().catch(e => { console.error(e); process.exit(1) })
