'use strict'
// Over wss:// (NODE_EXTRA_CA_CERTS names the test CA): log in, write with an ack, read back.
const { connect, run } = require('./lib')

run(async () => {
  const client = await connect({ username: 'ada' })
  await client.record.setDataWithAck('tls/js', { over: 'tls' })
  return { snapshot: await client.record.snapshot('tls/js') }
})
