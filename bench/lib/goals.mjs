// Issue 18's goals, each a ratio of two figures measured in the same run: `goalNotes` says for
// each whether this run met it, with the figures it compared (or that a figure is missing).

/**
 * `{ id, text, ok(figure), show(figure, find), applies? }`: the figure whose ratio (or median) the goal
 * reads; `applies(figure, find)` returns why the goal does not apply to this run, if it does not.
 */
const GOALS = [
  {
    id: 'logs-runner-vs-pm2',
    text: 'stored lines/s ≥ 1.0× PM2 writing its log file',
    ok: (f) => f.ratio >= 1.0,
    show: (f, find) => {
      const [runner, pm2] = ['logs-runner-vs-cat', 'logs-pm2-vs-cat'].map((id) => find(id)?.ratio)
      const pipe = runner && pm2 ? `; beside \`cat\` draining a default pipe: runner ${fmt(runner)}×, PM2 ${fmt(pm2)}×` : ''
      return `${fmt(f.ratio)}× PM2${pipe}`
    },
  },
  { id: 'logs-runner-delivered-vs-node', text: 'lines/s delivered to one streamLogs subscriber ≥ 1.0× plain Node + readline', ok: (f) => f.ratio >= 1.0, show: (f) => `${fmt(f.ratio)}× plain Node` },
  {
    id: 'logs-runner-markers',
    text: 'no lag marker while the subscriber keeps up (full flood)',
    // A subscriber that takes clearly fewer lines/s than the store takes (under 0.95× of it)
    // does not keep up: the issue keeps the lag markers for it ("a subscriber that really is
    // slow"). Without markers, or within 5 % of the store's rate, the goal is judged.
    applies: (f, find) => {
      const delivered = find('logs-runner-delivered')
      const stored = find('logs-runner-stored')
      if (f.max === 0 || !delivered?.median || !stored?.median || delivered.median >= 0.95 * stored.median) return null
      return `the subscriber took ${millions(delivered.median)} lines/s of the ${millions(stored.median)} stored: it did not keep up, and its ${f.values.join(', ')} markers are the lag semantics`
    },
    ok: (f) => f.max === 0,
    show: (f) => `markers per run: ${f.values.join(', ')}`,
  },
  { id: 'logs-runner-paced-markers', text: "no lag marker while the subscriber keeps up (flood paced at plain Node's lines/s)", ok: (f) => f.max === 0, show: (f) => `markers per run: ${f.values.join(', ')}` },
  { id: 'kill-runner', text: 'kill → reaped ≤ 1.5× Node', ok: (f) => f.ratio <= 1.5, show: (f) => `${fmt(f.ratio)}× Node` },
  { id: 'sample-runner', text: 'one sample of a 10-process tree ≤ 0.5× pidusage', ok: (f) => f.ratio <= 0.5, show: (f) => `${fmt(f.ratio)}× pidusage` },
  { id: 'sample-runner-vs-list', text: 'getResourceUsage per server ≤ 1.0× PM2 list() ÷ 10', ok: (f) => f.ratio <= 1.0, show: (f) => `${fmt(f.ratio)}× PM2 list() ÷ 10` },
]

const fmt = (x) => (x >= 10 ? x.toFixed(1) : x.toFixed(2))
const millions = (x) => `${(x / 1e6).toFixed(2)} M`

/** One line per goal of issue 18 for the notes under the table (ratios must be resolved). */
export function goalNotes(results) {
  const lines = []
  for (const goal of GOALS) {
    const f = results.figures.find((x) => x.id === goal.id)
    const usable = f && f.median !== null && (f.baseline === null || f.ratio !== null)
    if (!usable) {
      lines.push(`Goal (issue 18) ${goal.text}: not measured in this run.`)
      continue
    }
    const find = (id) => results.figures.find((x) => x.id === id)
    const notApplicable = goal.applies?.(f, find)
    if (notApplicable) {
      lines.push(`Goal (issue 18) ${goal.text}: does not apply (${notApplicable}).`)
      continue
    }
    lines.push(`Goal (issue 18) ${goal.text}: ${goal.ok(f) ? 'met' : 'NOT met'} (${goal.show(f, find)}).`)
  }
  return lines
}
