#!/usr/bin/env node
// Runs before the package is packed (npm's `prepack`, for `npm pack` and `npm publish`) and,
// with --publish, first thing in `prepublishOnly`.
//
// Packing a checkout (npm pack): the tarball carries the binary built here,
// runner-local.<platform>.node (package.json `files` lists runner-local.*.node), so it installs
// and loads on this machine on its own. Without a built binary for this machine packing stops
// with the command that builds it, instead of producing a package that cannot load (unless
// package.json already lists the platform packages as optionalDependencies, as
// `napi pre-publish` leaves it: then those bring the binary).
//
// Publishing (npm publish, which runs `napi pre-publish`): binaries ship only in the platform
// packages (npm/<platform>/, listed as optionalDependencies by pre-publish). A binary in the
// package root would be published inside the main package as well, so publishing stops and
// says where the file belongs.
//
// Output goes to stderr only: `npm pack --json` prints its JSON on stdout.
'use strict'

const fs = require('node:fs')
const path = require('node:path')

const { BINARY_NAME, binaryFile, hostPlatform, platformPackage } = require('../platform.cjs')

const root = path.resolve(__dirname, '..')
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const binaries = fs.readdirSync(root).filter((name) => name.startsWith(`${BINARY_NAME}.`) && name.endsWith('.node'))
const hasPlatformDependencies = Object.keys(manifest.optionalDependencies ?? {}).some((name) => name.startsWith(`${manifest.name}-`))
const publishing = process.argv.includes('--publish') || process.env.npm_command === 'publish'

function fail(message) {
  console.error(`\n${manifest.name}: ${message}\n`)
  process.exit(1)
}

if (publishing) {
  if (binaries.length > 0) {
    const moves = binaries.map((name) => `  mv ${name} npm/${name.slice(BINARY_NAME.length + 1, -'.node'.length)}/`).join('\n')
    fail(
      `not publishing: ${binaries.join(', ')} in the package root would ship inside the main package as well as ` +
        `in its platform package. The published main package gets its binaries through optionalDependencies ` +
        `(napi pre-publish). Move each binary into its platform package and publish again:\n${moves}`,
    )
  }
} else {
  const platform = hostPlatform()
  const file = binaryFile(platform)
  if (!binaries.includes(file) && hasPlatformDependencies) {
    // A release manifest (napi pre-publish added the platform packages): they bring the binary.
    console.error(`${manifest.name}: packing without a binary: optionalDependencies bring ${platformPackage(platform)} and the others`)
  } else if (!binaries.includes(file)) {
    fail(
      `cannot pack: ${file}, the native addon for this machine (${platform}), is not built, and a package ` +
        `without it cannot load here.\nBuild it first, then pack again:\n  npm run build    (needs Rust: https://rustup.rs)\n  npm pack\n` +
        `(Released versions get the binary from ${platformPackage(platform)}; see "Install from a checkout" in README.md.)`,
    )
  }
  if (binaries.length > 0) console.error(`${manifest.name}: packing ${binaries.join(', ')} (built here) into the package`)
}
