import { createStep, createWorkflow } from '@mastra/core/workflows'
import { z } from 'zod'

const upper = createStep({
  id: 'upper',
  inputSchema: z.object({ text: z.string() }),
  outputSchema: z.object({ text: z.string() }),
  execute: async ({ inputData }) => ({ text: inputData.text.toUpperCase() }),
})

const exclaim = createStep({
  id: 'exclaim',
  inputSchema: z.object({ text: z.string() }),
  outputSchema: z.object({ text: z.string() }),
  execute: async ({ inputData }) => ({ text: `${inputData.text}!` }),
})

/** Upper-cases a text and adds an exclamation mark, in two steps. */
export const shoutWorkflow = createWorkflow({
  id: 'shout',
  inputSchema: z.object({ text: z.string() }),
  outputSchema: z.object({ text: z.string() }),
})
  .then(upper)
  .then(exclaim)
  .commit()
