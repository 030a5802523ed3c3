// Evaluates Valve expressions in real JavaScript, for differential tests of our interpreter.
// stdin: one JSON array per line, [expression, {name: value}]; stdout: one JSON line per input,
// {ok: value} or {error: "TypeError ..."}, with undefined, NaN and +-Infinity tagged (the sign
// of zero is not compared: the interpreter does not keep it through integer arithmetic).
'use strict'
const readline = require('readline')

function tag (value) {
  if (value === undefined) return { $js: 'undefined' }
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return { $js: 'NaN' }
    if (!Number.isFinite(value)) return { $js: value > 0 ? 'Infinity' : '-Infinity' }
    return value
  }
  if (Array.isArray(value)) return value.map(tag)
  if (value !== null && typeof value === 'object') {
    const out = {}
    for (const key of Object.keys(value)) out[key] = tag(value[key])
    return out
  }
  return value
}

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const [expression, names] = JSON.parse(line)
  const keys = Object.keys(names)
  let out
  try {
    // eslint-disable-next-line no-new-func
    const fn = new Function(...keys, `return (${expression})`)
    out = { ok: tag(fn(...keys.map((k) => names[k]))) }
  } catch (error) {
    out = { error: String(error) }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
})
