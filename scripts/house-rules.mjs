// Checks the source tree's structural rules (issue 29), so they hold after every change:
// 1. no core or binding file is longer than 700 lines before its `#[cfg(test)]` block (a file
//    that is a test module as a whole, `tests.rs` or `testing.rs`, is all tests);
// 2. no import cycle among the core's modules;
// 3. the binding reads at most 20 arguments as `Option<Unknown>` (untyped JS values).
//
// Import cycles: nodes are the top-level modules under src/ (the binding, lib.rs and the test
// support excluded), except that a *leaf* file (one that names no other module of the crate)
// is a node of its own, so that `error` naming `process::exit::ExitInfo` does not tie `error`
// to the rest of `process`. A reference is any `crate::a::b::…` path outside a file's
// `#[cfg(test)] mod tests`, resolved to the deepest module file that exists.
//   node scripts/house-rules.mjs   (exit status 1 when a rule is broken)
import { readFileSync, readdirSync } from 'node:fs'
import { join, relative } from 'node:path'

const MAX_LINES = 700
const MAX_UNTYPED_ARGUMENTS = 20
const root = new URL('../src/', import.meta.url).pathname

function rustFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return rustFiles(path)
    return entry.name.endsWith('.rs') ? [path] : []
  })
}

/** `a/b/mod.rs` and `a/b.rs` are module `a::b`. */
function moduleOf(path) {
  const parts = relative(root, path).slice(0, -3).split('/')
  if (parts.at(-1) === 'mod') parts.pop()
  return parts.join('::')
}

/** The text before the file's tests. */
function body(text) {
  const tests = text.search(/^#\[cfg\(test\)\]/m)
  return tests === -1 ? text : text.slice(0, tests)
}

const files = new Map(rustFiles(root).map((path) => [moduleOf(path), readFileSync(path, 'utf8')]))
const problems = []

/** A file that is a test module as a whole (`#[cfg(test)] mod tests;` in its parent). */
const isTestModule = (module) => /(^|::)(tests|testing)$/.test(module)

for (const [module, text] of files) {
  if (isTestModule(module)) continue
  const lines = body(text).split('\n').length - 1
  if (lines > MAX_LINES) problems.push(`${module}: ${lines} lines before its tests (at most ${MAX_LINES})`)
}

const untyped = [...files]
  .filter(([module]) => module.startsWith('binding'))
  .reduce((sum, [, text]) => sum + (text.match(/Option<Unknown/g) ?? []).length, 0)
if (untyped > MAX_UNTYPED_ARGUMENTS) {
  problems.push(`the binding reads ${untyped} arguments as Option<Unknown> (at most ${MAX_UNTYPED_ARGUMENTS})`)
}

const outside = (module) =>
  ['lib', 'test_support'].includes(module) || module.startsWith('binding') || isTestModule(module)
const referenced = new Map()
for (const [module, text] of files) {
  if (outside(module)) continue
  const code = body(text.replace(/^\s*\/\/.*$/gm, ''))
  const paths = []
  for (const match of code.matchAll(/crate::((?:\w+::)*)\{([^}]*)\}/g)) {
    for (const item of match[2].split(',')) {
      const name = item.trim().split(/\s+as\s+/)[0].replace(/[{}\s]/g, '')
      if (name) paths.push(match[1] + name)
    }
  }
  for (const match of code.matchAll(/crate::((?:\w+::)*\w+)/g)) paths.push(match[1])
  const targets = new Set()
  for (const path of paths) {
    const parts = path.split('::').filter(Boolean)
    for (let n = parts.length; n > 0; n--) {
      const candidate = parts.slice(0, n).join('::')
      if (files.has(candidate)) {
        if (!outside(candidate) && candidate.split('::')[0] !== module.split('::')[0]) targets.add(candidate)
        break
      }
    }
  }
  referenced.set(module, targets)
}
const node = (module) =>
  module.includes('::') && (referenced.get(module)?.size ?? 0) === 0 ? module : module.split('::')[0]
const graph = new Map()
for (const [module, targets] of referenced) {
  for (const target of targets) {
    const [from, to] = [node(module), node(target)]
    if (from === to) continue
    if (!graph.has(from)) graph.set(from, new Map())
    if (!graph.get(from).has(to)) graph.get(from).set(to, module)
  }
}
// Tarjan's strongly connected components: every component of two or more nodes is a cycle.
const index = new Map()
const low = new Map()
const stack = []
const onStack = new Set()
let counter = 0
function visit(v) {
  index.set(v, counter)
  low.set(v, counter++)
  stack.push(v)
  onStack.add(v)
  for (const w of graph.get(v)?.keys() ?? []) {
    if (!index.has(w)) {
      visit(w)
      low.set(v, Math.min(low.get(v), low.get(w)))
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)))
  }
  if (low.get(v) === index.get(v)) {
    const component = []
    let w
    do {
      w = stack.pop()
      onStack.delete(w)
      component.push(w)
    } while (w !== v)
    if (component.length > 1) {
      const edges = component.flatMap((from) =>
        [...(graph.get(from) ?? [])].filter(([to]) => component.includes(to)).map(([to, via]) => `${from} -> ${to} (in ${via})`),
      )
      problems.push(`import cycle among ${component.sort().join(', ')}: ${edges.join('; ')}`)
    }
  }
}
for (const v of graph.keys()) if (!index.has(v)) visit(v)

if (problems.length) {
  for (const problem of problems) console.log(problem)
  process.exit(1)
}
const checked = [...files.keys()].filter((module) => !isTestModule(module)).length
console.log(`house rules hold: ${checked} files ≤ ${MAX_LINES} lines before their tests, no import cycle, ${untyped} untyped binding arguments`)
