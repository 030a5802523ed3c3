'use strict'
// The HTTP API beside the official client: an HTTP write reaches a subscribed JS client live
// (whole record, then a path), an HTTP emit reaches an event subscriber, an HTTP RPC is answered
// by a JS provider, and a JS write is what an HTTP read then returns.
const { url, connect, recorder, settle, waitFor, run, unique } = require('./lib')

const api = `http://${url.split('/')[0]}/api`

async function post (body) {
  const response = await fetch(api, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ body })
  })
  return { status: response.status, answer: await response.json() }
}

run(async () => {
  const client = await connect()
  const name = unique('http-live')
  const record = client.record.getRecord(name)
  await record.whenReady()
  const seen = recorder()
  record.subscribe(seen)

  const whole = await post([{ topic: 'record', action: 'write', recordName: name, data: { from: 'http' } }])
  await seen.count(1, 'live update')
  const patch = await post([{ topic: 'record', action: 'write', recordName: name, path: 'n', data: 7 }])
  await seen.count(2, 'live patch')
  await waitFor('version 2', () => record.version === 2)

  const eventName = unique('http-event')
  const events = recorder()
  client.event.subscribe(eventName, events)
  await settle()
  const emit = await post([{ topic: 'event', action: 'emit', eventName, data: { hi: 1 } }])
  await events.count(1, 'event')

  const rpcName = unique('http-rpc')
  client.rpc.provide(rpcName, (data, response) => response.send({ doubled: data * 2 }))
  await settle()
  const rpc = await post([{ topic: 'rpc', action: 'make', rpcName, data: 21 }])

  record.set('n', 8)
  await new Promise((resolve) => setTimeout(resolve, 100))
  const read = await post([{ topic: 'record', action: 'read', recordName: name }])

  return {
    whole,
    patch,
    updates: seen.calls,
    version: record.version,
    emit,
    events: events.calls,
    rpc,
    read
  }
})
