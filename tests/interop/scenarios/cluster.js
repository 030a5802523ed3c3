'use strict'
// A cluster seen by the official client: the scenario's url is node 0, args[0] lists every
// node's url (comma-separated). Events emitted on each node reach subscribers on every node
// (never the emitter); presence joins, leaves and queries are cluster-wide; records are refused
// with MESSAGE_DENIED until records are clustered.
const { args, connect, recorder, settle, run, unique, outcome, sleep } = require('./lib')

run(async () => {
  const urls = args[0].split(',')
  const id = unique('c').replace(/\//g, '-')
  const name = `${id}/news`
  const subscribers = []
  for (const [i, target] of urls.entries()) {
    const client = await connect({ username: `${id}-sub${i}` }, {}, target)
    const got = recorder()
    client.event.subscribe(name, got)
    subscribers.push({ client, got })
  }
  const watcher = subscribers[0].client
  const everyone = recorder()
  watcher.presence.subscribe((user, online) => { if (user.startsWith(`${id}-user`)) everyone([user, online]) })
  await settle()

  // events: every subscriber emits once; each gets the others' emits, never its own
  for (const [i, { client }] of subscribers.entries()) client.event.emit(name, { from: i, text: 'ü{x}' })
  for (const { got } of subscribers) await got.count(urls.length - 1, 'events from the other nodes')
  await sleep(300)
  const events = subscribers.map(({ got }) => got.calls.map((data) => data.from).sort())

  // presence: a user on the last node, then also on node 1; it leaves only when both close
  const user = `${id}-user`
  const last = await connect({ username: user }, {}, urls[urls.length - 1])
  await everyone.count(1, 'join')
  const again = await connect({ username: user }, {}, urls[1])
  const queries = []
  for (const target of urls) {
    const asker = await connect({ username: `${id}-asker` }, {}, target)
    queries.push(await outcome(asker.presence.getAll([user, `${id}-nobody`])))
  } // the askers stay: a leave travels through Redis, a getAll right after could still see them
  const all = await outcome(watcher.presence.getAll())
  last.close()
  await sleep(500) // still online through node 1
  const afterFirstClose = await outcome(watcher.presence.getAll([user]))
  again.close()
  await everyone.count(2, 'leave')
  const afterSecondClose = await outcome(watcher.presence.getAll([user]))

  // records: refused, not served from a node-local cache
  watcher.record.getRecord(`${id}/record`)
  await sleep(500) // the refusal arrives as a client error (in `errors`)
  return {
    events,
    presenceEvents: everyone.calls,
    queries,
    getAll: all.ok ? all.ok.filter((u) => u.startsWith(id)).sort() : all,
    afterFirstClose,
    afterSecondClose,
    id
  }
})
