// RPC round trips over raw deepstream sockets, for benchmarks/rpc.py: plain `ws` sockets and
// protocol messages built from templates and read by hand (no client library), so that the
// server rather than this process is what is measured. Same load as rpc.js: one provider,
// one requester keeping IN_FLIGHT requests outstanding until REQUESTS have been answered; the
// provider sends ACCEPT, then RESPONSE with the request's data, each message in its own
// WebSocket frame as the official client does (6 messages through the server per round trip).
// usage: node rawrpc.js URL   env: REQUESTS IN_FLIGHT
// Prints "PHASE rpc" / "PHASE rpc-end" around the measured part, then one JSON line (as
// rpc.js, plus this process's CPU time per round trip).
const WebSocket = require('ws')
const { getMessage } = require('@deepstream/protobuf/dist/src/message-builder')
const { parse } = require('@deepstream/protobuf/dist/src/message-parser')
const { TOPIC, CONNECTION_ACTION: C, AUTH_ACTION: A, RPC_ACTION: R } = require('@deepstream/protobuf/dist/types/all')

const url = process.argv[2]
const { REQUESTS, now, measure } = require('./rpcmeasure')
const msg = m => getMessage(m, false)
const PONG = msg({ topic: TOPIC.CONNECTION, action: C.PONG })
const NAME = 'bench/' + Math.random().toString(36).slice(2, 8)

// Where an RPC message starts in a frame, else -1. The envelope: varint(length), 0x10 topic,
// 0x1a varint(length) of the per-topic message, whose first field is the action (0x08
// action), as both servers write it.
function payloadStart (d) {
  let p = d[0] < 0x80 ? 1 : d[1] < 0x80 ? 2 : 3
  if (d[p] !== 0x10 || d[p + 1] !== TOPIC.RPC || d[p + 2] !== 0x1a) return -1
  p += 3
  while (d[p] >= 0x80) p++
  return p + 1
}
function varint (n) {
  const out = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return out
}
// The fields of an RPC message as [field number] -> Buffer (strings) or number (varints).
function fields (d, p) {
  const out = {}
  while (p < d.length) {
    let tag = 0, shift = 0, b
    do { b = d[p++]; tag |= (b & 0x7f) << shift; shift += 7 } while (b >= 0x80)
    let v = 0; shift = 0
    do { b = d[p++]; v |= (b & 0x7f) << shift; shift += 7 } while (b >= 0x80)
    if ((tag & 7) === 2) { out[tag >> 3] = d.subarray(p, p + v); p += v } else out[tag >> 3] = v
  }
  return out
}
// An RPC message with these fields (field number order, as protobuf.js writes them).
const nameField = Buffer.from([0x3a, ...varint(Buffer.byteLength(NAME)), ...Buffer.from(NAME)])
function rpcFrame (action, cid, data) {
  const parts = [Buffer.from([0x08, action])]
  if (data) parts.push(Buffer.from([0x12, ...varint(data.length)]), data)
  parts.push(Buffer.from([0x1a, ...varint(cid.length)]), cid, nameField)
  const body = Buffer.concat(parts)
  const head = Buffer.from([0x10, TOPIC.RPC, 0x1a, ...varint(body.length)])
  return Buffer.concat([Buffer.from(varint(head.length + body.length)), head, body])
}

// What a socket is sent during one turn of the event loop goes out in one write (the socket
// corked until the turn's callbacks are done): one system call per read's worth of answers,
// not one per message.
function uncork (ws) { ws.corked = false; ws._socket.uncork() }
function send (ws, frame) {
  if (!ws.corked) { ws.corked = true; ws._socket.cork(); process.nextTick(uncork, ws) }
  ws.send(frame)
}

function connect (onOpen, onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.binaryType = 'nodebuffer'
    let open = false
    ws.on('error', reject)
    ws.on('open', () => ws.send(msg({ topic: TOPIC.CONNECTION, action: C.CHALLENGE, url })))
    ws.on('message', data => {
      if (open && onMessage(ws, data)) return
      const m = parse(data)[0]
      if (m.topic === TOPIC.CONNECTION && m.action === C.PING) ws.send(PONG)
      else if (m.topic === TOPIC.CONNECTION && m.action === C.ACCEPT) {
        ws.send(msg({ topic: TOPIC.AUTH, action: A.REQUEST, data: '{}' }))
      } else if (m.topic === TOPIC.AUTH && m.action === A.AUTH_SUCCESSFUL) {
        open = true
        onOpen(ws, resolve)
      } else if (m.isError) reject(new Error(`server error ${JSON.stringify(m)}`))
    })
  })
}

// The requester's REQUEST: a template whose 8-digit request number (in the correlation id and
// in the data, {"i": n}) is written in place per request.
const FIRST = 10000000
const TEMPLATE = msg({ topic: TOPIC.RPC, action: R.REQUEST, name: NAME, correlationId: String(FIRST), data: `{"i":${FIRST}}` })
const DIGITS = []
for (let at = TEMPLATE.indexOf(String(FIRST)); at >= 0; at = TEMPLATE.indexOf(String(FIRST), at + 1)) DIGITS.push(at)

async function main () {
  const provider = await connect((ws, ready) => {
    ws.send(msg({ topic: TOPIC.RPC, action: R.PROVIDE, names: [NAME], correlationId: '1' }))
    setTimeout(ready, 300, ws) // as rpc.js: let the provide settle
  }, (ws, data) => {
    const p = payloadStart(data)
    if (p < 0 || data[p] !== 0x08 || data[p + 1] !== R.REQUEST) return false
    const f = fields(data, p)
    send(ws, rpcFrame(R.ACCEPT, f[3]))
    send(ws, rpcFrame(R.RESPONSE, f[3], f[2]))
    return true
  })

  let sent = 0, answered = 0, failed = 0, measuring = false, onAnswer = null
  const started = new Float64Array(REQUESTS + 1000)
  const lat = []
  const requester = await connect((ws, ready) => ready(ws), (ws, data) => {
    const p = payloadStart(data)
    if (p < 0 || data[p] !== 0x08) return false
    const action = data[p + 1]
    if (action === R.ACCEPT) return true
    if (action !== R.RESPONSE) failed++ // an error about the request: answered too
    const f = fields(data, p)
    const i = +f[3].toString() - FIRST
    if (measuring) lat.push(now() - started[i])
    answered++
    onAnswer()
    return true
  })
  const request = () => {
    const frame = Buffer.from(TEMPLATE)
    const digits = String(FIRST + sent)
    for (const at of DIGITS) frame.write(digits, at, 'latin1')
    started[sent++] = now()
    send(requester, frame)
  }

  // warm-up, not measured: 200 requests
  await new Promise(resolve => {
    onAnswer = () => { if (answered === 200) resolve() }
    for (let i = 0; i < 200; i++) request()
  })
  const total = sent + REQUESTS
  answered = 0; measuring = true
  let done
  const finished = new Promise(resolve => { done = resolve })
  onAnswer = () => {
    if (sent < total) request()
    else if (answered === REQUESTS) done()
  }
  await measure({ url, request, finished, lat, counts: () => ({ answered, failed }) })
  provider.terminate(); requester.terminate()
  setTimeout(() => process.exit(0), 100)
}
main().catch(e => { console.error(e); process.exit(1) })
