// Checks the source tree's structural rules (issue 29), so they hold after every change:
// 1. no core or binding file is longer than 700 lines before its `#[cfg(test)]` block (a file
//    that is a test module as a whole, `tests.rs` or `testing.rs`, is all tests);
// 2. no import cycle among the core's modules;
// 3. the binding reads at most 20 arguments as `Option<Unknown>` (untyped JS values).
//
// Import cycles: the graph has a node per source file (the binding, lib.rs and test modules
// left out) and an edge for every path it names into another file of the crate (`crate::`,
// `super::`, `self::` and child-module paths, outside `#[cfg(test)]`). Files of one top-level
// module may depend on each other both ways (the `impl Runner` files do); a circle that runs
// through two top-level modules is an import cycle between core modules.
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
// The file graph: an edge for every `crate::…`, `super::…`, `self::…` path and every path into
// a child module (`store::LogStore` in `logs/mod.rs`), resolved to the deepest module file.
const graph = new Map()
for (const [module, text] of files) {
  if (outside(module)) continue
  const code = body(text.replace(/^\s*\/\/.*$/gm, ''))
  const self = module.split('::')
  const parent = self.slice(0, -1)
  const base = (anchor) => (anchor === 'crate' ? [] : anchor === 'super' ? parent : self)
  const paths = []
  for (const match of code.matchAll(/(crate|super|self)::((?:\w+::)*)\{([^}]*)\}/g)) {
    for (const item of match[3].split(',')) {
      const name = item.trim().split(/\s+as\s+/)[0].replace(/[{}\s]/g, '')
      if (name && name !== 'self') paths.push([...base(match[1]), ...(match[2] + name).split('::').filter(Boolean)])
    }
  }
  for (const match of code.matchAll(/(crate|super|self)::((?:\w+::)*\w+)/g)) {
    paths.push([...base(match[1]), ...match[2].split('::')])
  }
  for (const match of code.matchAll(/(?:^|[^:\w])(\w+)::/gm)) {
    if (files.has([...self, match[1]].join('::'))) paths.push([...self, match[1]])
  }
  const targets = new Set()
  for (const parts of paths) {
    for (let n = parts.length; n > 0; n--) {
      const candidate = parts.slice(0, n).join('::')
      if (files.has(candidate)) {
        if (!outside(candidate) && candidate !== module) targets.add(candidate)
        break
      }
    }
  }
  graph.set(module, targets)
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
  for (const w of graph.get(v) ?? []) {
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
    const modules = new Set(component.map((file) => file.split('::')[0]))
    if (modules.size > 1) {
      const edges = component.flatMap((from) =>
        [...(graph.get(from) ?? [])].filter((to) => component.includes(to)).map((to) => `${from} -> ${to}`),
      )
      problems.push(`import cycle across ${[...modules].sort().join(', ')}: ${edges.join('; ')}`)
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
