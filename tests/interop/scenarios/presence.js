'use strict'
// Presence: join and leave events (global and per user), getAll with and without a user list,
// and a user with two connections stays online until the last one closes.
const { connect, recorder, settle, run, outcome, unique, waitFor, sleep } = require('./lib')

run(async () => {
  const id = unique('p').replace(/\//g, '-')
  const watcher = await connect({ username: `${id}-watcher` })
  const user = `${id}-user`
  const everyone = recorder()
  const justUser = recorder()
  watcher.presence.subscribe((name, online) => { if (name.startsWith(id)) everyone([name, online]) })
  watcher.presence.subscribe(user, (name, online) => justUser([name, online]))
  await settle()
  const out = { before: await outcome(watcher.presence.getAll([user])) }

  const first = await connect({ username: user })
  await everyone.count(1, 'join')
  const second = await connect({ username: user }) // same user again: no second join
  const other = await connect({ username: `${id}-other` })
  await everyone.count(2, 'join of the other user')
  const all = await outcome(watcher.presence.getAll())
  out.getAll = all.ok ? all.ok.filter((name) => name.startsWith(id)).sort() : all
  out.getSome = await outcome(watcher.presence.getAll([user, `${id}-nobody`, `${id}-watcher`]))
  out.seenByUser = await outcome(first.presence.getAll()) // never includes the asking user
  out.seenByUser = out.seenByUser.ok ? out.seenByUser.ok.filter((name) => name.startsWith(id)) : out.seenByUser

  first.close()
  await sleep(300) // `second` still holds the user online
  out.afterFirstClose = await outcome(watcher.presence.getAll([user]))
  second.close()
  await justUser.count(2, 'leave')
  out.afterSecondClose = await outcome(watcher.presence.getAll([user]))

  watcher.presence.unsubscribe()
  await settle()
  other.close()
  await sleep(300)
  out.events = everyone.calls.slice()
  out.userEvents = justUser.calls.slice()
  return out
})
