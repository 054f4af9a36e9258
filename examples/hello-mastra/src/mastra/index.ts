import { Mastra } from '@mastra/core/mastra'

import { greetTool } from './tools/greet'
import { shoutWorkflow } from './workflows/shout'

export const mastra = new Mastra({
  tools: { greetTool },
  workflows: { shoutWorkflow },
})
