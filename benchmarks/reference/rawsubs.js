// Raw deepstream record subscribers for benchmarks/records.py: plain `ws` sockets and
// pre-built protocol messages, no client library, so that the server rather than this
// process is what is measured.
// usage: node rawsubs.js URL   env: CONNS, FIRST (index of this process's first connection),
//   PREFIX, PER_CONN (records per connection: connection i holds PREFIX + i*PER_CONN ..
//   PREFIX + (i+1)*PER_CONN - 1), SHARED=1 (every connection holds PREFIX + '0' instead).
// Prints READY once every connection holds its records. Commands on stdin, one a line:
//   lat     from now on, read each update's data ({"t": send time}) for its latency
//   wait N  print "REACHED <deliveries> <monotonic ms>" once N updates have been delivered
//   count   print "COUNT <deliveries>"
//   report  print {"lat": [...]} (milliseconds, send to receive) and exit
// Deliveries are RECORD UPDATE and PATCH messages; the writer sets path "t" to
// process.hrtime (monotonic, the same clock in every process of the machine).
const WebSocket = require('ws')
const { getMessage } = require('@deepstream/protobuf/dist/src/message-builder')
const { parse } = require('@deepstream/protobuf/dist/src/message-parser')
const { TOPIC, CONNECTION_ACTION: C, AUTH_ACTION: A, RECORD_ACTION: R } = require('@deepstream/protobuf/dist/types/all')

const url = process.argv[2]
const CONNS = +process.env.CONNS, FIRST = +(process.env.FIRST || 0), PER_CONN = +(process.env.PER_CONN || 1)
const PREFIX = process.env.PREFIX, SHARED = process.env.SHARED === '1'
const now = () => Number(process.hrtime.bigint()) / 1e6
const msg = m => getMessage(m, false)
const PONG = msg({ topic: TOPIC.CONNECTION, action: C.PONG })
const PING = msg({ topic: TOPIC.CONNECTION, action: C.PING })
let delivered = 0, target = Infinity, timing = false
const lat = []

// topic * 256 + action without decoding: varint(length), 0x10 topic, 0x1a varint(length) of
// the per-topic message, whose first field is the action (0x08 action), as both servers write it
function kind (d) {
  let p = d[0] < 0x80 ? 1 : d[1] < 0x80 ? 2 : 3
  if (d[p] !== 0x10 || d[p + 2] !== 0x1a) return -1
  const topic = d[p + 1]
  p += 3
  while (d[p] >= 0x80) p++ // the message's length
  return d[p + 1] === 0x08 ? topic * 256 + d[p + 2] : -1
}
const UPDATE = TOPIC.RECORD * 256 + R.UPDATE, PATCH = TOPIC.RECORD * 256 + R.PATCH

function delivery (data) {
  delivered++
  if (timing) {
    const m = parse(data)[0]
    const sent = m.path === 't' ? JSON.parse(m.data) : JSON.parse(m.data).t
    lat.push(now() - sent)
  }
  if (delivered >= target) { target = Infinity; console.log(`REACHED ${delivered} ${now()}`) }
}

function open (index) {
  return new Promise((resolve, reject) => {
    const names = SHARED ? [PREFIX + '0']
      : Array.from({ length: PER_CONN }, (_, k) => PREFIX + (index * PER_CONN + k))
    let waiting = names.length
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.binaryType = 'nodebuffer'
    ws.on('error', reject)
    ws.on('open', () => ws.send(msg({ topic: TOPIC.CONNECTION, action: C.CHALLENGE, url })))
    ws.on('message', data => {
      if (waiting === 0) { // the common case, told without decoding
        const k = kind(data)
        if (k === UPDATE || k === PATCH) { delivery(data); return }
      }
      const m = parse(data)[0]
      if (m.topic === TOPIC.CONNECTION && m.action === C.PING) ws.send(PONG)
      else if (m.topic === TOPIC.CONNECTION && m.action === C.ACCEPT) {
        ws.send(msg({ topic: TOPIC.AUTH, action: A.REQUEST, data: '{}' }))
      } else if (m.topic === TOPIC.AUTH && m.action === A.AUTH_SUCCESSFUL) {
        for (let i = 0; i < names.length; i += 100) {
          ws.send(msg({ topic: TOPIC.RECORD, action: R.SUBSCRIBECREATEANDREAD, names: names.slice(i, i + 100), correlationId: String(i) }))
        }
      } else if (m.topic === TOPIC.RECORD && (m.action === R.READ_RESPONSE || m.action === R.HEAD_RESPONSE)) {
        if (--waiting === 0) resolve(ws)
      } else if (m.topic === TOPIC.RECORD && (m.action === R.UPDATE || m.action === R.PATCH)) {
        delivery(data)
      } else if (m.isError) reject(new Error(`server error ${JSON.stringify(m)}`))
    })
  })
}

async function main () {
  const sockets = []
  for (let i = 0; i < CONNS; i += 25) { // in batches: a burst of handshakes is no test
    const batch = []
    for (let j = i; j < Math.min(CONNS, i + 25); j++) batch.push(open(FIRST + j))
    sockets.push(...await Promise.all(batch))
  }
  console.log('READY')
  // both servers drop a connection they have heard nothing from for two 30 s heartbeats
  setInterval(() => sockets.forEach(s => s.send(PING)), 20000)
  require('readline').createInterface({ input: process.stdin }).on('line', line => {
    const [cmd, arg] = line.trim().split(' ')
    if (cmd === 'lat') timing = true
    else if (cmd === 'count') console.log(`COUNT ${delivered}`)
    else if (cmd === 'wait') {
      target = +arg
      if (delivered >= target) { target = Infinity; console.log(`REACHED ${delivered} ${now()}`) }
    } else if (cmd === 'report') {
      console.log(JSON.stringify({ lat: lat.map(v => Math.round(v * 1000) / 1000) }))
      sockets.forEach(s => s.terminate())
      setTimeout(() => process.exit(0), 100)
    }
  })
}
main().catch(e => { console.error(e); process.exit(1) })
