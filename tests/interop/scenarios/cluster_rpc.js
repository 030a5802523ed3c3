'use strict'
// RPC across a cluster seen by the official client: args[0] lists the three nodes' urls. Every
// request is made on node 0; providers live on nodes 1 and 2 (and 0 where said). Then the
// scenario leaves requests in flight at node 2's providers, prints KILL-NODE2 and waits until
// the test has SIGKILLed node 2: the unaccepted request must be rerouted to node 1, the
// accepted one must fail at once (not after response_timeout), and node 2's providers must no
// longer be chosen.
const { args, connect, run, unique, outcome, settle, sleep, handshake, waitFor } = require('./lib')

run(async () => {
  const urls = args[0].split(',')
  const base = unique('crpc')
  const caller = await connect({ username: 'caller' }, {}, urls[0])
  const on = []
  for (const [i, target] of urls.entries()) {
    on.push([await connect({ username: `p${i}a` }, {}, target), await connect({ username: `p${i}b` }, {}, target)])
  }
  const calls = {}
  const count = (key) => { calls[key] = (calls[key] || 0) + 1 }

  // served only on node 2
  on[2][0].rpc.provide(`${base}/add`, (data, response) => { count('add'); response.send(data.a + data.b) })
  // every provider rejects: one on node 1, two on node 2 -> each asked once, then NO_RPC_PROVIDER
  on[1][0].rpc.provide(`${base}/rejects`, (data, response) => { count('rejects1'); response.reject() })
  on[2][0].rpc.provide(`${base}/rejects`, (data, response) => { count('rejects2a'); response.reject() })
  on[2][1].rpc.provide(`${base}/rejects`, (data, response) => { count('rejects2b'); response.reject() })
  // a local provider rejects (asked first), node 1 rejects, node 2 answers
  on[0][0].rpc.provide(`${base}/mixed`, (data, response) => { count('mixed0'); response.reject() })
  on[1][0].rpc.provide(`${base}/mixed`, (data, response) => { count('mixed1'); response.reject() })
  on[2][0].rpc.provide(`${base}/mixed`, (data, response) => { count('mixed2'); response.send('node2') })
  // node 2's two providers each take 3.5 s to decide: the first decision is a reject, the
  // second an accept. The requester's node restarts its ack deadline (6 s) when node 2 hands the
  // request on, as one node does, so 7 s in all is no ACCEPT_TIMEOUT.
  let slowDecisions = 0
  for (const client of on[2]) {
    client.rpc.provide(`${base}/slow-decider`, (data, response) => {
      response.autoAccept = false
      setTimeout(() => {
        slowDecisions++
        if (slowDecisions === 1) response.reject()
        else response.send('decided')
      }, 3500)
    })
  }
  on[2][0].rpc.provide(`${base}/never-accepts`, (data, response) => { response.autoAccept = false })
  on[2][0].rpc.provide(`${base}/never-responds`, (data, response) => response.accept())
  on[1][0].rpc.provide(`${base}/gone`, (data, response) => response.send('still here'))
  await settle()
  await sleep(300) // provider notices travel through Redis to node 0

  const out = {}
  out.add = await outcome(caller.rpc.make(`${base}/add`, { a: 2, b: 3 }))
  out.addEcho = await Promise.all(['ü{x}', 7, null, [1, { x: true }]].map((a) =>
    outcome(caller.rpc.make(`${base}/add`, { a, b: '' }))))
  out.rejects = await outcome(caller.rpc.make(`${base}/rejects`, null))
  out.mixed = []
  for (let i = 0; i < 3; i++) out.mixed.push(await outcome(caller.rpc.make(`${base}/mixed`, i)))
  out.noProvider = await outcome(caller.rpc.make(`${base}/nobody`, null))
  const started = Date.now()
  const timed = (name) => outcome(caller.rpc.make(`${base}/${name}`, null)).then((r) => ({ ...r, ms: Date.now() - started }))
  const [slowDecider, acceptTimeout, responseTimeout] = await Promise.all(
    ['slow-decider', 'never-accepts', 'never-responds'].map(timed))
  Object.assign(out, { slowDecider, slowDecisions, acceptTimeout, responseTimeout })
  out.beforeUnprovide = await outcome(caller.rpc.make(`${base}/gone`, null))
  on[1][0].rpc.unprovide(`${base}/gone`)
  await settle()
  await sleep(300)
  out.afterUnprovide = await outcome(caller.rpc.make(`${base}/gone`, null))
  out.calls = { ...calls }

  // -- node 2 dies with requests in flight -------------------------------------------------
  let heldAsked = false
  let acceptedAsked = false
  on[2][0].rpc.provide(`${base}/held`, (data, response) => { heldAsked = true; response.autoAccept = false })
  on[2][0].rpc.provide(`${base}/accepted`, (data, response) => { acceptedAsked = true; response.accept() })
  on[1][0].rpc.provide(`${base}/both`, (data, response) => response.send('node1'))
  on[2][0].rpc.provide(`${base}/both`, (data, response) => response.send('node2'))
  await settle()
  await sleep(300)
  const held = outcome(caller.rpc.make(`${base}/held`, null))
  const accepted = outcome(caller.rpc.make(`${base}/accepted`, null))
  await waitFor('node 2 to hold both requests', () => heldAsked && acceptedAsked)
  // a provider on node 1 appears only now: the held request can only be rerouted there
  on[1][1].rpc.provide(`${base}/held`, (data, response) => response.send('rerouted to node1'))
  await settle()
  await sleep(300)
  await handshake('KILL-NODE2')
  const killedAt = Date.now()
  const [heldOutcome, acceptedOutcome] = await Promise.all([
    held.then((r) => ({ ...r, ms: Date.now() - killedAt })),
    accepted.then((r) => ({ ...r, ms: Date.now() - killedAt }))
  ])
  out.held = heldOutcome
  out.accepted = acceptedOutcome
  out.afterKill = []
  for (let i = 0; i < 10; i++) out.afterKill.push(await outcome(caller.rpc.make(`${base}/both`, i)))
  return out
})
