'use strict'
// Reconnect: the server restarts under a connected client; the client reconnects and logs in
// again by itself, and its event subscriptions and RPC providers are restored.
// Protocol with the driving test: prints RESTART-NOW, waits for a line on stdin once the server
// is back, then prints its JSON result.
const { connect, recorder, settle, run, outcome, unique, waitFor, handshake } = require('./lib')

run(async () => {
  const name = unique('reconnect')
  const options = { reconnectIntervalIncrement: 100, maxReconnectInterval: 300, maxReconnectAttempts: 50 }
  const survivor = await connect({ username: 'survivor' }, options)
  const states = []
  survivor.on('connectionStateChanged', (state) => states.push(state))
  const got = recorder()
  survivor.event.subscribe(name, got)
  survivor.rpc.provide(`${name}/rpc`, (data, response) => response.send(`pong ${data}`))
  await settle()

  await handshake('RESTART-NOW')
  await waitFor('the client to reconnect', () => survivor.getConnectionState() === 'OPEN' && states.includes('RECONNECTING'), 10000)
  const fresh = await connect()
  await settle()
  fresh.event.emit(name, 'after restart')
  await got.count(1, 'event after restart')
  return {
    sawReconnecting: states.includes('RECONNECTING'),
    finalState: survivor.getConnectionState(),
    received: got.calls,
    rpc: await outcome(fresh.rpc.make(`${name}/rpc`, 'ping')),
    online: await outcome(fresh.presence.getAll())
  }
})
