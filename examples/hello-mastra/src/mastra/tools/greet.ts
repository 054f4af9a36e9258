import { createTool } from '@mastra/core/tools'
import { z } from 'zod'

/** Greets someone by name; needs no model and no API key. */
export const greetTool = createTool({
  id: 'greet',
  description: 'Greets a person by name',
  inputSchema: z.object({ name: z.string().min(1) }),
  outputSchema: z.object({ greeting: z.string() }),
  execute: async (input) => ({ greeting: `Hello, ${input.name}!` }),
})
