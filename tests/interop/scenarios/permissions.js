'use strict'
// Permissions through the official client: every section's refusal as the client reports it
// (rejected promises, callback errors, 'error' events), the allowed actions working, and a
// refused write reaching nobody. The rules (test_permissions.py) key on user.id, so the same
// scenario runs against recordgate and the reference server with open auth.
// Args: a prefix for names (so runs do not collide).
const { connect, run, outcome, callback, settle, sleep, recorder, errors, args } = require('./lib')

run(async () => {
  const p = args[0] || 'p'
  const admin = await connect({ username: 'admin' })
  const bob = await connect({ username: 'bob' })
  const out = {}

  // records: the admin writes, bob may read "pub/" but not "sec/", write neither
  out.adminSet = await outcome(admin.record.setDataWithAck(`sec/${p}`, { v: 1 }))
  const watched = admin.record.getRecord(`sec/${p}`)
  await watched.whenReady()
  const updates = recorder()
  watched.subscribe(updates)
  out.setWithAck = await outcome(bob.record.setDataWithAck(`sec/${p}`, { v: 2 }))
  out.setPath = await outcome(bob.record.setDataWithAck(`sec/${p}`, 'v', 3))
  out.snapshot = await outcome(bob.record.snapshot(`sec/${p}`))
  out.head = await outcome(bob.record.head(`sec/${p}`))
  out.has = await outcome(bob.record.has(`sec/${p}`))
  const denied = bob.record.getRecord(`sec/${p}`)
  denied.on('error', (error) => { out.recordErrorEvent = String(error) })
  await sleep(300)
  out.deniedRecordReady = denied.isReady
  bob.record.setData(`sec/${p}`, { v: 4 })  // unacknowledged: the error reaches 'error'
  out.createDenied = await outcome(bob.record.setDataWithAck(`sec/new-${p}`, { v: 1 }))
  out.pubSet = await outcome(admin.record.setDataWithAck(`pub/${p}`, { v: 1 }))
  out.pubSnapshot = await outcome(bob.record.snapshot(`pub/${p}`))
  const pub = bob.record.getRecord(`pub/${p}`)
  await pub.whenReady()
  out.deleteDenied = await outcome(pub.delete())
  bob.record.listen(`sec/${p}.*`, (name, response) => response.accept())

  // events
  const heard = recorder()
  admin.event.subscribe(`ev/admin/${p}`, heard)
  bob.event.subscribe(`ev/admin/${p}`, () => {})
  await settle()
  bob.event.emit(`ev/admin/${p}`, 'from bob')
  admin.event.emit(`ev/admin/${p}`, 'from admin')
  bob.event.listen(`ev/admin/${p}.*`, () => {})

  // rpc
  admin.rpc.provide(`rpc/admin/${p}`, (data, response) => response.send(data * 2))
  bob.rpc.provide(`rpc/admin/${p}`, (data, response) => response.send(0))
  await settle()
  out.adminMake = await outcome(admin.rpc.make(`rpc/admin/${p}`, 21))
  out.bobMake = await callback((cb) => bob.rpc.make(`rpc/admin/${p}`, 21, cb))

  // presence
  out.presenceAll = await outcome(bob.presence.getAll())
  out.presenceSome = await outcome(bob.presence.getAll(['admin']))
  bob.presence.subscribe(() => {})
  out.adminPresence = await outcome(admin.presence.getAll(['bob']))

  await sleep(500)
  out.updatesSeenByAdmin = updates.calls
  out.adminSnapshot = await outcome(admin.record.snapshot(`sec/${p}`))
  out.eventsHeardByAdmin = heard.calls
  return out
})
