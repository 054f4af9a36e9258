import { Agent } from '@mastra/core/agent'
import { LibSQLStore } from '@mastra/libsql'
import { Memory } from '@mastra/memory'

/**
 * An agent with memory kept in a LibSQL file database. Its threads can be created and read
 * over Mastra's HTTP API without calling the model, so the app starts and serves without an
 * API key; only generating a reply would need one.
 */
export const notesAgent = new Agent({
  id: 'notes-agent',
  name: 'Notes Agent',
  instructions: 'You keep short notes for the user and recall them in later conversations.',
  model: 'openai/gpt-4o-mini',
  memory: new Memory({
    storage: new LibSQLStore({
      id: 'notes-memory',
      // Relative to the server's working directory: Mastra's templates run the built server
      // from .mastra/output, which puts the database (with its -wal and -shm files) in .mastra/.
      url: 'file:../mastra.db',
    }),
    options: { lastMessages: 20 },
  }),
})
