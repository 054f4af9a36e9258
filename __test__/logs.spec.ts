// Log utilities of SPEC §2: RingBuffer, LogCollectorImpl and the create*LogStream helpers.
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'

import { addon, packageRoot } from './helpers/addon'
import { messageOf } from './helpers/errors'
import { waitFor } from './helpers/wait'

const { RingBuffer, LogCollectorImpl, createBuildLogStream, createMultiLogStream, createFilteredLogStream, formatLogLine } = addon

describe('RingBuffer', () => {
  it('keeps the newest items of any type, up to its capacity', () => {
    const ring = new RingBuffer(3)
    const obj = { a: 1 }
    for (const item of [obj, 2, 'three', null, undefined]) ring.push(item)
    expect(ring.getSize()).toBe(3)
    expect(ring.toArray()).toEqual(['three', null, undefined])
    expect(ring.getTail(2)).toEqual([null, undefined])
    expect(ring.getTail(0)).toEqual([])
    expect(ring.getTail(10)).toEqual(['three', null, undefined])
    const holder = new RingBuffer(1)
    holder.push(obj)
    expect(holder.toArray()[0]).toBe(obj)
    ring.clear()
    expect(ring.getSize()).toBe(0)
    expect(ring.toArray()).toEqual([])
  })

  it('rejects a capacity that is not a positive integer', () => {
    expect(messageOf(() => new RingBuffer(0))).toBe('Invalid capacity: must be an integer from 1 to 4294967295 (got 0)')
    expect(messageOf(() => new RingBuffer(-1))).toBe('Invalid capacity: must be an integer from 1 to 4294967295 (got -1)')
    expect(messageOf(() => new RingBuffer('3' as never))).toBe("Invalid capacity: expected a number, got string '3'")
    expect(messageOf(() => new RingBuffer(1).getTail(1.5))).toBe('Invalid n: must be an integer from 0 to 4294967295 (got 1.5)')
  })
})

describe('LogCollectorImpl', () => {
  it('joins lines with \\n and prefixes stderr in text form', () => {
    const logs = new LogCollectorImpl()
    logs.append('first')
    logs.append('oops', 'stderr')
    logs.appendMultiple(['a', 'b'])
    logs.appendMultiple(['e1', 'e2'], 'stderr')
    expect(logs.getAll()).toBe('first\n[stderr] oops\na\nb\n[stderr] e1\n[stderr] e2')
    expect(logs.getTail(2)).toBe('[stderr] e1\n[stderr] e2')
    expect(logs.getLineCount()).toBe(6)
  })

  it('splits appended text on newlines, handling \\r\\n', () => {
    const logs = new LogCollectorImpl()
    logs.append('one\r\ntwo\nthree')
    expect(logs.getAll()).toBe('one\ntwo\nthree')
    expect(logs.getLineCount()).toBe(3)
  })

  it('keeps only the newest maxLines lines', () => {
    const logs = new LogCollectorImpl(3)
    logs.appendMultiple(['1', '2', '3', '4', '5'])
    expect(logs.getAll()).toBe('3\n4\n5')
  })

  it('cuts a line over 64 KiB with a visible marker', () => {
    const logs = new LogCollectorImpl()
    logs.append('x'.repeat(100_000))
    const line = logs.getAll()
    expect(line.startsWith('x'.repeat(65_536))).toBe(true)
    expect(line).toMatch(/… \[line truncated: longer than 65536 bytes\]$/)
  })

  it('answers getSince with the lines stored at or after a date', async () => {
    const logs = new LogCollectorImpl()
    logs.append('old')
    // The cut must be a later millisecond than the stored line: wait for the clock to pass it.
    const oldAt = Date.parse(logs.getPaginated(1).entries[0].timestamp)
    await waitFor(() => Date.now() > oldAt)
    const cut = new Date()
    logs.append('new')
    expect(logs.getSince(cut)).toBe('new')
    expect(logs.getSince(new Date(0))).toBe('old\nnew')
    expect(logs.getSince(new Date(Date.now() + 60_000))).toBe('')
  })

  it('pages backwards through structured entries with cursors', () => {
    const logs = new LogCollectorImpl()
    for (let i = 0; i < 5; i++) logs.append(`line ${i}`, i % 2 ? 'stderr' : 'stdout')
    const newest = logs.getPaginated(2)
    expect(newest.entries.map((e) => e.line)).toEqual(['line 3', 'line 4'])
    expect(newest.entries.map((e) => e.stream)).toEqual(['stderr', 'stdout'])
    expect(newest.hasMore).toBe(true)
    expect(newest.newestCursor).toBe(newest.entries[1].id)
    expect(new Date(newest.entries[0].timestamp).toISOString()).toBe(newest.entries[0].timestamp)
    const older = logs.getPaginated(2, newest.oldestCursor!)
    expect(older.entries.map((e) => e.line)).toEqual(['line 1', 'line 2'])
    const oldest = logs.getPaginated(10, older.oldestCursor!)
    expect(oldest.entries.map((e) => e.line)).toEqual(['line 0'])
    expect(oldest.hasMore).toBe(false)
    const empty = logs.getPaginated(10, oldest.oldestCursor!)
    expect(empty).toEqual({ entries: [], hasMore: false, oldestCursor: null, newestCursor: null })
    expect(logs.getPaginated().entries).toHaveLength(5)
  })

  it('keeps cursors increasing after clear()', () => {
    const logs = new LogCollectorImpl()
    logs.append('a')
    const before = Number(logs.getPaginated().newestCursor)
    logs.clear()
    expect(logs.getLineCount()).toBe(0)
    expect(logs.getAll()).toBe('')
    logs.append('b')
    expect(Number(logs.getPaginated().newestCursor)).toBe(before + 1)
  })

  it('rejects bad arguments with the argument named', () => {
    const logs = new LogCollectorImpl()
    expect(messageOf(() => new LogCollectorImpl(0))).toBe('Invalid maxLines: must be an integer from 1 to 4294967295 (got 0)')
    expect(messageOf(() => logs.append(5 as never))).toBe('Invalid line: expected a string, got number 5')
    expect(messageOf(() => logs.append('x', 'stdin' as never))).toBe("Invalid stream: must be 'stdout' or 'stderr' (got 'stdin')")
    expect(messageOf(() => logs.appendMultiple('x' as never))).toBe("Invalid lines: expected an array of strings, got string 'x'")
    expect(messageOf(() => logs.appendMultiple(['ok', 7] as never))).toBe('Invalid lines[1]: expected a string, got number 7')
    expect(messageOf(() => logs.getTail(-1))).toBe('Invalid n: must be an integer from 0 to 4294967295 (got -1)')
    expect(messageOf(() => logs.getSince('yesterday' as never))).toBe("Invalid since: expected a Date, got string 'yesterday'")
    expect(messageOf(() => logs.getSince(new Date('nope')))).toBe('Invalid since: is an invalid Date')
    expect(messageOf(() => logs.getPaginated(0))).toBe('Invalid limit: must be an integer from 1 to 4294967295 (got 0)')
    expect(messageOf(() => logs.getPaginated(1, 'abc'))).toBe("Invalid before: expected a cursor from a previous page (got 'abc')")
    expect(messageOf(() => logs.stream(undefined as never))).toBe('Invalid callback: expected a function, got undefined')
    expect(logs.getLineCount()).toBe(0)
  })
})

describe('LogCollectorImpl.stream', () => {
  it('delivers only new lines, in text form, before append returns, until unsubscribed (idempotently)', () => {
    const logs = new LogCollectorImpl()
    logs.append('before')
    const got: string[] = []
    const unsubscribe = logs.stream((line) => got.push(line))
    logs.append('one')
    expect(got).toEqual(['one'])
    logs.append('two', 'stderr')
    logs.appendMultiple(['three', 'four'])
    expect(got).toEqual(['one', '[stderr] two', 'three', 'four'])
    logs.append('just before unsubscribing')
    unsubscribe()
    unsubscribe()
    logs.append('after')
    expect(got).toEqual(['one', '[stderr] two', 'three', 'four', 'just before unsubscribing'])
  })

  it('delivers 100 000 lines complete and in order', () => {
    const logs = new LogCollectorImpl(1_000)
    const got: string[] = []
    const unsubscribe = logs.stream((line) => got.push(line))
    const total = 100_000
    for (let start = 0; start < total; start += 1_000) {
      logs.appendMultiple(Array.from({ length: 1_000 }, (_, i) => String(start + i)))
    }
    unsubscribe()
    expect(got.length).toBe(total)
    for (let i = 0; i < total; i++) {
      if (got[i] !== String(i)) throw new Error(`line ${i} arrived as ${got[i]}`)
    }
  })

  it('says how many lines one append dropped at once, and delivers the kept ones', () => {
    const logs = new LogCollectorImpl(3)
    const got: string[] = []
    logs.stream((line) => got.push(line))
    logs.appendMultiple(['1', '2', '3', '4', '5'])
    expect(got).toEqual(['[log] 2 lines skipped: this subscriber fell behind', '3', '4', '5'])
  })

  it('lets a callback unsubscribe itself or append without breaking the others', () => {
    const logs = new LogCollectorImpl()
    const once: string[] = []
    const all: string[] = []
    const stop = logs.stream((line) => {
      once.push(line)
      stop()
    })
    logs.stream((line) => {
      all.push(line)
      if (line === 'ping') logs.append('pong')
    })
    logs.append('ping')
    logs.append('again')
    expect(once).toEqual(['ping'])
    expect(all).toEqual(['ping', 'pong', 'again'])
  })

  it('keeps a throwing callback subscribed and other subscribers unaffected', () => {
    const logs = new LogCollectorImpl()
    const thrower: string[] = []
    const calm: string[] = []
    logs.stream((line) => {
      thrower.push(line)
      throw new Error(`cannot handle ${line}`)
    })
    logs.stream((line) => calm.push(line))
    expect(() => logs.append('a')).not.toThrow()
    logs.append('b')
    expect(thrower).toEqual(['a', 'b'])
    expect(calm).toEqual(['a', 'b'])
  })

  it('never keeps Node alive: a script with a live subscription exits by itself', () => {
    const script = `
      const { LogCollectorImpl } = require(${JSON.stringify(packageRoot)})
      const logs = new LogCollectorImpl()
      logs.stream((line) => console.log('got', line))
      logs.append('hello')
      setTimeout(() => logs.append('later'), 50)`
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
    expect(run.signal).toBeNull()
    expect(run.status).toBe(0)
  })
})

describe('log stream helpers', () => {
  it('createBuildLogStream stamps lines by default, with an optional prefix, as formatLogLine does', () => {
    const got: string[] = []
    const stamp = /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\]/
    createBuildLogStream((line) => got.push(line))('stamped')
    createBuildLogStream((line) => got.push(line), { includeTimestamp: false })('as is')
    createBuildLogStream((line) => got.push(line), { prefix: '[install]' })('hello')
    expect(got[0]).toMatch(new RegExp(`${stamp.source} stamped$`))
    expect(got[1]).toBe('as is')
    expect(got[2]).toMatch(new RegExp(`${stamp.source} \\[install\\] hello$`))
    expect(formatLogLine('x', { includeTimestamp: false, prefix: '[build]' })).toBe('[build] x')
    expect(formatLogLine('x')).toMatch(new RegExp(`${stamp.source} x$`))
    expect(() => createBuildLogStream(undefined)('dropped')).not.toThrow()
  })

  it('createBuildLogStream with buffered delivers later, in order, all lines', async () => {
    const got: string[] = []
    const write = createBuildLogStream((line) => got.push(line), { buffered: true, flushIntervalMs: 20, includeTimestamp: false })
    for (let i = 0; i < 50; i++) write(`l${i}`)
    expect(got).toEqual([])
    await waitFor(() => got.length === 50)
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `l${i}`))
  })

  it('createBuildLogStream swallows a throwing callback and validates options', () => {
    const write = createBuildLogStream(() => {
      throw new Error('sink down')
    })
    expect(() => write('x')).not.toThrow()
    expect(messageOf(() => createBuildLogStream('nope' as never))).toBe("Invalid callback: expected a function, got string 'nope'")
    expect(messageOf(() => createBuildLogStream(() => {}, { flushIntervalMs: 0 }))).toBe(
      'Invalid config.flushIntervalMs: must be an integer from 1 to 3600000 (got 0)',
    )
    expect(messageOf(() => createBuildLogStream(() => {}, { buffered: 'yes' as never }))).toBe(
      "Invalid config.buffered: expected a boolean, got string 'yes'",
    )
    expect(messageOf(() => formatLogLine('x', { prefix: 3 as never }))).toBe('Invalid config.prefix: expected a string, got number 3')
  })

  it('createMultiLogStream reaches every callback even when one throws', () => {
    const a: string[] = []
    const b: string[] = []
    const write = createMultiLogStream(
      (line) => a.push(line),
      () => {
        throw new Error('middle fails')
      },
      (line) => b.push(line),
    )
    write('fan out')
    expect(a).toEqual(['fan out'])
    expect(b).toEqual(['fan out'])
    expect(messageOf(() => createMultiLogStream(() => {}, 3 as never))).toBe('Invalid callbacks[1]: expected a function, got number 3')
  })

  it('createFilteredLogStream forwards only lines the predicate accepts', () => {
    const got: string[] = []
    const write = createFilteredLogStream(
      (line) => got.push(line),
      (line) => {
        if (line === 'explode') throw new Error('predicate failed')
        return line.includes('error')
      },
    )
    for (const line of ['ok', 'an error', 'explode', 'another error']) write(line)
    expect(got).toEqual(['an error', 'another error'])
    expect(() => createFilteredLogStream(undefined, () => true)('dropped')).not.toThrow()
  })
})
