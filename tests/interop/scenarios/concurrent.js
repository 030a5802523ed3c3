'use strict'
// Two clients write one record in the same tick, round after round; after each round both must
// agree on one version and data, which is also what the server serves (snapshot and head).
// Argument: the number of rounds. (Unbounded interleaving is not used: the official client
// itself does not always recover from a conflict that arrives while it is not merging.)
const { connect, run, outcome, unique, sleep, args } = require('./lib')

const same = (x, y) => JSON.stringify(x) === JSON.stringify(y)

run(async () => {
  const rounds = Number(args[0] || 5)
  const a = await connect()
  const b = await connect()
  const c = await connect()
  const name = unique('race')
  const ra = a.record.getRecord(name)
  const rb = b.record.getRecord(name)
  await Promise.all([ra.whenReady(), rb.whenReady()])
  await sleep(50)

  const converge = async (round) => {
    const end = Date.now() + 3000
    let last = null
    while (Date.now() < end) {
      if (ra.version === rb.version && same(ra.get(), rb.get())) {
        const [snapshot, head] = await Promise.all([outcome(c.record.snapshot(name)), outcome(c.record.head(name))])
        last = { snapshot, head }
        if (same(snapshot.ok, ra.get()) && head.ok === ra.version) return { version: ra.version, data: ra.get() }
      }
      await sleep(10)
    }
    throw new Error(`round ${round}: no convergence: a=${JSON.stringify([ra.version, ra.get()])} ` +
      `b=${JSON.stringify([rb.version, rb.get()])} server=${JSON.stringify(last)}`)
  }

  const results = []
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      ra.set({ writer: 'a', round })
      rb.set({ writer: 'b', round })
    } else {
      ra.set('fromA', round)
      rb.set('fromB', round)
    }
    results.push(await converge(round))
  }
  await sleep(100) // nothing still in flight may break the agreement
  return {
    rounds: results,
    a: { version: ra.version, data: ra.get() },
    b: { version: rb.version, data: rb.get() },
    server: (await outcome(c.record.snapshot(name))).ok,
    head: (await outcome(c.record.head(name))).ok
  }
})
