// Figures: series of measurements summarised as median / min / max, each compared with the
// baseline measured in the same run, and the results table in markdown.

/** Epoch milliseconds with sub-millisecond precision, comparable across processes. */
export const epochNow = () => performance.timeOrigin + performance.now()

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Collects figures and renders them. */
export class Results {
  constructor() {
    /** @type {object[]} */
    this.figures = []
    /** @type {{ section: string, error: string }[]} */
    this.errors = []
    /** @type {string[]} */
    this.notes = []
  }

  /**
   * Records a series. `id` names it so other series can use it as their `baseline`; `better`
   * is 'lower' or 'higher' (for reading the ratio); `note` is shown in the table.
   */
  add({ id, section, figure, system, short, unit, values, better = 'lower', baseline = null, note = '' }) {
    const clean = values.filter((v) => Number.isFinite(v))
    const entry = {
      id,
      section,
      figure,
      system,
      // How ratios name this series when it is someone's baseline.
      short: short ?? system.split(/[:(`]/)[0].trim(),
      unit,
      better,
      baseline,
      note,
      runs: clean.length,
      values: clean,
      median: clean.length ? median(clean) : null,
      min: clean.length ? Math.min(...clean) : null,
      max: clean.length ? Math.max(...clean) : null,
      ratio: null,
      warning: null,
    }
    if (clean.length < values.length) entry.note = `${entry.note} ${values.length - clean.length} run(s) failed`.trim()
    if (entry.min !== null && entry.min > 0 && entry.max / entry.min > 2) {
      entry.warning = `noisy: max/min = ${(entry.max / entry.min).toFixed(1)}`
    } else if (entry.min === 0 && entry.max > 0) {
      entry.warning = 'noisy: min is 0'
    }
    this.figures.push(entry)
    return entry
  }

  /** Fills in every ratio (median / baseline median) once all series are in. */
  resolveRatios() {
    for (const f of this.figures) {
      if (!f.baseline) continue
      const base = this.figures.find((b) => b.id === f.baseline)
      if (base && base.median && f.median !== null) {
        f.ratio = f.median / base.median
        f.baselineSystem = base.short
      }
    }
  }

  error(section, err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err)
    this.errors.push({ section, error: message })
    console.error(`!! ${section} failed: ${message}`)
  }

  /** The results table in markdown, one table per section. */
  markdown(meta) {
    this.resolveRatios()
    const out = []
    out.push(`Run ${meta.date} on ${meta.cpus} × ${meta.cpuModel}, Node ${meta.node}, PM2 ${meta.pm2 ?? 'n/a'}, commit ${meta.commit}; took ${meta.totalSeconds.toFixed(0)} s.`)
    out.push('')
    out.push('Median of the runs, [min – max], number of runs. Ratio = this median ÷ the median of the named baseline, measured in the same run. ↓ lower is better, ↑ higher is better. ⚠ marks a series whose max/min > 2.')
    const sections = [...new Set(this.figures.map((f) => f.section))]
    for (const section of sections) {
      out.push('')
      out.push(`#### ${section}`)
      out.push('')
      out.push('| Figure | System | Median | [min – max] | Runs | Ratio | Note |')
      out.push('| --- | --- | ---: | ---: | ---: | --- | --- |')
      for (const f of this.figures.filter((x) => x.section === section)) {
        const isBaseline = this.figures.some((x) => x.baseline === f.id)
        const ratio = f.baseline
          ? f.ratio === null
            ? 'n/a'
            : `${fmtRatio(f.ratio)}× ${f.baselineSystem}`
          : isBaseline
            ? '*baseline*'
            : '—'
        const note = [f.warning ? `⚠ ${f.warning}` : '', f.note].filter(Boolean).join('; ')
        out.push(
          `| ${f.figure} (${f.unit} ${f.better === 'lower' ? '↓' : '↑'}) | ${f.system} | ${fmt(f.median, f.unit)} | ` +
            `[${fmt(f.min, f.unit)} – ${fmt(f.max, f.unit)}] | ${f.runs} | ${ratio} | ${note} |`,
        )
      }
    }
    if (this.notes.length) {
      out.push('')
      for (const n of this.notes) out.push(`- ${n}`)
    }
    if (this.errors.length) {
      out.push('')
      out.push('Failed sections:')
      for (const e of this.errors) out.push(`- ${e.section}: ${e.error.split('\n')[0]}`)
    }
    return out.join('\n')
  }
}

function fmtRatio(r) {
  return r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(2) : r.toFixed(3)
}

/** A number with a precision that suits its size. */
export function fmt(v, unit) {
  if (v === null || v === undefined) return 'n/a'
  if (unit === 'boolean') return v ? 'yes' : 'no'
  const abs = Math.abs(v)
  if (abs >= 1e6) return `${(v / 1e6).toFixed(2)} M`
  if (abs >= 1e4) return `${(v / 1e3).toFixed(0)} k`
  if (abs >= 100) return v.toFixed(0)
  if (abs >= 10) return v.toFixed(1)
  if (abs >= 1) return v.toFixed(2)
  return v.toFixed(3)
}
