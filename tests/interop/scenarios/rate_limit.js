'use strict'
// A client sending faster than server.max_messages_per_second (test_rate_limit.py): the states
// the official client goes through once the server closes it, and whether it works afterwards.
const { connect, run, sleep, waitFor, outcome } = require('./lib')

run(async () => {
  const client = await connect({ username: 'fast' })
  const states = []
  client.on('connectionStateChanged', (state) => states.push(state))
  for (let i = 0; i < 40; i++) client.event.emit('flood', i)
  await waitFor('a reconnection', () => states.includes('RECONNECTING') && client.getConnectionState() === 'OPEN', 10000)
  await sleep(1500) // the bucket refills
  const after = await outcome(client.record.head('anything'))
  return { states, after }
})
