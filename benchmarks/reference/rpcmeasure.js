// The measured part shared by rpc.js and rawrpc.js (benchmarks/rpc.py reads what it prints).
// measure() prints "PHASE rpc", calls request() IN_FLIGHT times (each answer is to send the
// next until REQUESTS), waits for `finished`, prints "PHASE rpc-end", then one JSON line: round
// trips/s, latency percentiles of `lat` (ms) and this process's CPU time per round trip.
// counts() gives { answered, failed } once finished.
const REQUESTS = +(process.env.REQUESTS || 20000), IN_FLIGHT = +(process.env.IN_FLIGHT || 50)
const now = () => Number(process.hrtime.bigint()) / 1e6

async function measure ({ url, request, finished, lat, counts }) {
  console.log('PHASE rpc')
  const cpu0 = process.cpuUsage(), t0 = now()
  for (let i = 0; i < IN_FLIGHT; i++) request()
  await finished
  const t1 = now(), cpu = process.cpuUsage(cpu0)
  console.log('PHASE rpc-end')
  const { answered, failed } = counts()
  lat.sort((a, b) => a - b)
  const pct = p => +lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(3)
  console.log(JSON.stringify({
    url, requests: REQUESTS, in_flight: IN_FLIGHT, answered, failed,
    round_trips_per_s: Math.round(answered / ((t1 - t0) / 1000)),
    p50_ms: pct(0.5), p99_ms: pct(0.99),
    client_cpu_us: +((cpu.user + cpu.system) / answered).toFixed(2),
    client_sys_us: +(cpu.system / answered).toFixed(2),
  }))
}

module.exports = { REQUESTS, IN_FLIGHT, now, measure }
