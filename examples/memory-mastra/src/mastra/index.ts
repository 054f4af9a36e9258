import { Mastra } from '@mastra/core/mastra'

import { notesAgent } from './agents/notes'

export const mastra = new Mastra({
  agents: { notesAgent },
})
