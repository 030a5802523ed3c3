'use strict'
// RPC: provide/make with results and errors, a rejecting provider rerouted to another provider,
// no provider at all, unprovide, and the accept and response timeouts.
const { connect, run, outcome, unique, settle } = require('./lib')

run(async () => {
  const base = unique('rpc')
  const caller = await connect()
  const first = await connect()
  const second = await connect()
  const calls = { rejecting: 0, accepting: 0 }

  first.rpc.provide(`${base}/add`, (data, response) => response.send(data.a + data.b))
  first.rpc.provide(`${base}/echo`, (data, response) => response.send(data))
  first.rpc.provide(`${base}/fail`, (data, response) => response.error(`bad input ${data}`))
  first.rpc.provide(`${base}/route`, (data, response) => { calls.rejecting++; response.reject() })
  second.rpc.provide(`${base}/route`, (data, response) => { calls.accepting++; response.send('second') })
  first.rpc.provide(`${base}/only-rejects`, (data, response) => response.reject())
  first.rpc.provide(`${base}/never-accepts`, (data, response) => { response.autoAccept = false })
  first.rpc.provide(`${base}/never-responds`, (data, response) => response.accept())
  first.rpc.provide(`${base}/gone`, (data, response) => response.send('still here'))
  await settle()

  const out = {}
  out.add = await outcome(caller.rpc.make(`${base}/add`, { a: 2, b: 3 }))
  out.echo = await Promise.all(['text', 7, null, [1, { x: true }], { deep: { er: 'yes' } }].map((value) =>
    outcome(caller.rpc.make(`${base}/echo`, value))))
  out.callback = await new Promise((resolve) =>
    caller.rpc.make(`${base}/add`, { a: 1, b: 1 }, (error, result) => resolve({ error, result })))
  out.fail = await outcome(caller.rpc.make(`${base}/fail`, 'x'))
  out.route = []
  for (let i = 0; i < 4; i++) out.route.push(await outcome(caller.rpc.make(`${base}/route`, i)))
  out.routeCalls = calls
  out.onlyRejects = await outcome(caller.rpc.make(`${base}/only-rejects`, null))
  out.noProvider = await outcome(caller.rpc.make(`${base}/nobody`, null))
  first.rpc.unprovide(`${base}/gone`)
  await settle()
  out.afterUnprovide = await outcome(caller.rpc.make(`${base}/gone`, null))
  const [acceptTimeout, responseTimeout] = await Promise.all([
    outcome(caller.rpc.make(`${base}/never-accepts`, null)),
    outcome(caller.rpc.make(`${base}/never-responds`, null))
  ])
  Object.assign(out, { acceptTimeout, responseTimeout })
  return out
})
