'use strict'
// History-check clients (tests/history): official JS clients that log, from the wire, every
// RECORD message they receive and every write they send, for the Python checker.
//
//   node history.js URL0 URLS RECORDS SUBSCRIBERS WRITERS LOGFILE PREFIX [PAUSE_MS [NAMES]]
//
// URLS, RECORDS and NAMES are comma-separated. Client i connects to URLS[i % n], the node it
// logs is NAMES[i % n] (default node0, node1, ...); a URL may be a load balancer's. Subscribers hold
// every record and write nothing; writer k holds every record and writes at its version + 1
// (record.set with a callback: acknowledged) when k is even, and holds nothing and writes at
// version -1 (setDataWithAck: forced) when k is odd. Driven over stdin/stdout, a line each:
// prints "ready", waits for "go", writes until "stop", prints "stopped"; then "finish {JSON of
// record -> last version}" makes it wait (up to 15 s) until its subscribers got those versions,
// write its log (JSON lines: {kind: "obs"|"write", ...}) and print a summary as the last line.
const fs = require('fs')
const readline = require('readline')
const { TOPIC, RECORD_ACTION: A } = require('@deepstream/client/dist/src/constants')
const { connect, args, errors, sleep, run } = require('./lib')

const SOURCES = { [A.UPDATE]: 'update', [A.READ_RESPONSE]: 'read', [A.VERSION_EXISTS]: 'conflict', [A.HEAD_RESPONSE]: 'head' }
const WRITES = new Set([A.UPDATE, A.CREATEANDUPDATE])

const lines = readline.createInterface({ input: process.stdin })
const incoming = []
let wake = null
lines.on('line', (line) => { incoming.push(line.trim()); if (wake) wake() })
async function nextLine () {
  while (incoming.length === 0) await new Promise((resolve) => { wake = resolve })
  return incoming.shift()
}

run(async () => {
  const [urlList, recordList, subs, writers, logfile, prefix, pauseMs, nameList] = args
  const urls = urlList.split(',')
  const names = nameList ? nameList.split(',') : urls.map((_, i) => `node${i}`)
  const records = recordList.split(',')
  const pause = Number(pauseMs || 20)
  const log = []
  const clients = []

  async function start (name, role, index) {
    const node = names[index % urls.length]
    // reconnect soon and forever: a killed node's clients come back through the balancer
    const options = { maxReconnectAttempts: Infinity, reconnectIntervalIncrement: 200, maxReconnectInterval: 1000 }
    const client = await connect({ username: name }, options, urls[index % urls.length])
    const me = { name, role, node, conn: 0, client, live: [], sent: new Map(), count: 0, last: {} }
    client.on('connectionStateChanged', (state) => { if (state === 'RECONNECTING') me.conn++ })
    const connection = client.services.connection
    const handle = connection.handlers.get(TOPIC.RECORD)
    connection.handlers.set(TOPIC.RECORD, (m) => { tap(me, m); handle(m) })
    const send = connection.sendMessage.bind(connection)
    connection.sendMessage = (m) => {
      if (m.topic === TOPIC.RECORD && WRITES.has(m.action) && m.correlationId) {
        // the last send under an id is the write its answer settles
        me.sent.set(m.correlationId, { record: m.name, version: m.version === -1 ? null : m.version, value: m.parsedData })
      }
      return send(m)
    }
    if (role !== 'forcer') {
      me.live = records.map((r) => client.record.getRecord(r))
      await Promise.all(me.live.map((r) => r.whenReady()))
    }
    clients.push(me)
  }

  function observe (me, record, version, value, source) {
    const item = { kind: 'obs', client: me.name, node: me.node, record, version, source, conn: me.conn }
    if (value !== undefined) item.value = value
    log.push(item)
    me.last[record] = version
  }

  function settle (me, id, outcome) {
    const write = me.sent.get(id)
    if (!write) return
    me.sent.delete(id)
    log.push({ kind: 'write', client: me.name, node: me.node, ...write, outcome })
    if (outcome === 'acked' && write.version !== null) { // its own write is not sent back to it
      me.last[write.record] = Math.max(write.version, me.last[write.record] ?? -1)
    }
    if (me.settled) me.settled()
  }

  function tap (me, m) {
    const source = SOURCES[m.action]
    if (source && typeof m.version === 'number') {
      observe(me, m.name, m.version, source === 'head' ? undefined : m.parsedData, source)
    }
    if (m.action === A.WRITE_ACKNOWLEDGEMENT && m.correlationId) settle(me, m.correlationId, m.isError ? 'unknown' : 'acked')
    else if (m.action === A.VERSION_EXISTS && m.isWriteAck && m.correlationId) settle(me, m.correlationId, 'refused')
    else if (m.isError && m.isWriteAck && m.correlationId) settle(me, m.correlationId, 'unknown')
  }

  for (let i = 0; i < Number(subs); i++) await start(`${prefix}-sub${i}`, 'subscriber', i)
  for (let k = 0; k < Number(writers); k++) {
    await start(`${prefix}-w${k}`, k % 2 === 0 ? 'writer' : 'forcer', Number(subs) + k)
  }
  process.stdout.write('ready\n')
  if (await nextLine() !== 'go') throw new Error('expected go')

  let stopping = false
  const loops = clients.filter((me) => me.role !== 'subscriber').map(async (me) => {
    while (!stopping) {
      const index = Math.floor(Math.random() * records.length)
      const value = { w: me.name, n: ++me.count }
      // settled by its answer on the wire (a conflict may never call the callback back);
      // an unanswered write stays unsettled and is logged as unknown
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 10000)
        me.settled = () => { clearTimeout(timer); me.settled = null; resolve() }
        if (me.role === 'writer') me.live[index].set(value, () => {})
        else me.client.record.setDataWithAck(records[index], value, () => {})
      })
      await sleep(Math.random() * pause)
    }
  })
  if (await nextLine() !== 'stop') throw new Error('expected stop')
  stopping = true
  await Promise.all(loops)
  process.stdout.write('stopped\n')

  const finish = await nextLine()
  if (!finish.startsWith('finish ')) throw new Error('expected finish')
  const want = JSON.parse(finish.slice('finish '.length))
  const end = Date.now() + 15000
  const behind = () => clients.filter((me) => me.role !== 'forcer' &&
    Object.entries(want).some(([r, v]) => me.last[r] !== v))
  while (behind().length && Date.now() < end) await sleep(20)
  for (const me of clients) {
    for (const [, write] of me.sent) log.push({ kind: 'write', client: me.name, node: me.node, ...write, outcome: 'unknown' })
  }
  fs.writeFileSync(logfile, log.map((item) => JSON.stringify(item)).join('\n') + '\n')
  return {
    clients: clients.map((me) => me.name),
    observations: log.filter((item) => item.kind === 'obs').length,
    writes: log.filter((item) => item.kind === 'write').length,
    behind: behind().map((me) => me.name),
    errors: errors.length
  }
})
