// The stand-in's inbox page (/inbox/) in headless Chromium, driven by the Python tests: one JSON
// command a line on stdin, one JSON answer a line on stdout.
//
//   node inbox_browser.mjs <inbox-page-url>
//
// Every command names the browser session it acts in (`as`, a new browser context the first time:
// its own storage, so its own sign-in). Commands and their answers ({"step": <do>, ...}):
//   sign_in {email, password}   → {conversations: [...]} or {error}
//   conversations {}            → {conversations: [{id, name, preview, unread}]}
//   open {id}                   → {messages: [...]} once the page listens to the conversation
//   wait_message {body, status?} → {messages: [...]} once a row shows that body (and status)
//   wait_preview {id, preview}  → {conversations: [...]} once the list shows that preview
//   wait_typing {visible}       → {visible, ms} once the indicator is shown / hidden
//   set_bot {value}             → {} (inherit | on | off)
//   resume_bot {}               → {paused: <the banner's text>} once resumed (banner gone)
//   reply {text}                → {error} (null once the box is cleared)
//   screenshot {path}           → {}
// A step that fails answers {"step", "failed": <message>}.
import { createInterface } from 'node:readline'
import { execFileSync } from 'node:child_process'
import { chromium } from 'playwright-core'
import { say, deadline } from './client.mjs'

const [pageUrl] = process.argv.slice(2)
deadline(90, 'the inbox page session')
const STEP_MS = 10_000

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM
  try {
    return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim()
  } catch {
    return '/usr/bin/chromium'
  }
}

const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true })
const pages = new Map()

async function pageOf(name) {
  if (!pages.has(name)) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'es-CO' })
    const page = await context.newPage()
    page.setDefaultTimeout(STEP_MS)
    // What went wrong in the page shows in the test's failure (node's stderr).
    page.on('pageerror', (error) => process.stderr.write(`page error: ${error.message}\n`))
    page.on('console', (message) => {
      if (message.type() === 'error') process.stderr.write(`console: ${message.text()}\n`)
    })
    pages.set(name, page)
  }
  return pages.get(name)
}

const byTestId = (id) => `[data-testid="${id}"]`

function readConversations(page) {
  return page.$$eval(byTestId('conversation'), (items) =>
    items.map((li) => ({
      id: li.dataset.id,
      name: li.querySelector('[data-testid="conversation-item-name"]').textContent,
      preview: li.querySelector('[data-testid="conversation-item-preview"]').textContent,
      unread: Number(li.querySelector('[data-testid="unread"]')?.textContent ?? 0),
    })),
  )
}

function readMessages(page) {
  return page.$$eval(byTestId('message'), (items) =>
    items.map((li) => ({
      id: li.dataset.id,
      direction: li.dataset.direction,
      body: li.querySelector('[data-testid="message-body"]').textContent,
      bot_badge: li.querySelector('[data-testid="bot-badge"]') !== null,
      human_badge: li.querySelector('[data-testid="human-badge"]') !== null,
      status: li.querySelector('[data-testid="message-status"]')?.dataset.status ?? null,
    })),
  )
}

const steps = {
  async sign_in(page, { email, password }) {
    await page.goto(pageUrl)
    await page.fill(byTestId('email'), email)
    await page.fill(byTestId('password'), password)
    await page.click(byTestId('sign-in-submit'))
    await page.waitForSelector(
      `${byTestId('conversations')}[data-live="true"], ${byTestId('sign-in-error')}:not([hidden])`,
      { state: 'attached' },
    )
    const error = page.locator(`${byTestId('sign-in-error')}:not([hidden])`)
    if (await error.count()) return { error: await error.textContent() }
    return { conversations: await readConversations(page) }
  },

  async conversations(page) {
    return { conversations: await readConversations(page) }
  },

  async open(page, { id }) {
    await page.click(`${byTestId('conversation')}[data-id="${id}"]`)
    // Loaded, and both Realtime channels joined: what happens next is seen live.
    await page.waitForSelector(
      `${byTestId('conversation-pane')}[data-loaded="${id}"][data-messages-live="true"][data-typing-live="true"]`,
      { state: 'attached' },
    )
    return { messages: await readMessages(page) }
  },

  async wait_message(page, { body, status }) {
    await page.waitForFunction(
      ({ body, status }) =>
        [...document.querySelectorAll('[data-testid="message"]')].some(
          (li) =>
            li.querySelector('[data-testid="message-body"]').textContent === body &&
            (status == null ||
              li.querySelector('[data-testid="message-status"]')?.dataset.status === status),
        ),
      { body, status },
    )
    return { messages: await readMessages(page) }
  },

  async wait_preview(page, { id, preview }) {
    await page.waitForFunction(
      ({ id, preview }) =>
        document.querySelector(
          `[data-testid="conversation"][data-id="${id}"] [data-testid="conversation-item-preview"]`,
        )?.textContent === preview,
      { id, preview },
    )
    return { conversations: await readConversations(page) }
  },

  async wait_typing(page, { visible }) {
    const started = Date.now()
    await page.waitForSelector(byTestId('typing-indicator'), {
      state: visible ? 'visible' : 'hidden',
    })
    return { visible, ms: Date.now() - started }
  },

  async set_bot(page, { value }) {
    await page.selectOption(byTestId('bot-toggle'), value)
    return {}
  },

  async resume_bot(page) {
    const banner = page.locator(byTestId('bot-paused'))
    await banner.waitFor({ state: 'visible' })
    const paused = await page.textContent(byTestId('bot-paused-text'))
    await page.click(byTestId('resume-bot'))
    await banner.waitFor({ state: 'hidden' })
    return { paused }
  },

  async reply(page, { text }) {
    await page.fill(byTestId('reply-text'), text)
    await page.click(byTestId('reply-send'))
    await page.waitForFunction(
      () =>
        document.querySelector('[data-testid="reply-text"]').value === '' ||
        !document.querySelector('[data-testid="reply-error"]').hidden,
    )
    const error = page.locator(`${byTestId('reply-error')}:not([hidden])`)
    return { error: (await error.count()) ? await error.textContent() : null }
  },

  async screenshot(page, { path }) {
    await page.screenshot({ path })
    return {}
  },
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  const command = JSON.parse(line)
  try {
    const page = await pageOf(command.as ?? 'main')
    say({ step: command.do, ...(await steps[command.do](page, command)) })
  } catch (error) {
    say({ step: command.do, failed: String(error?.message ?? error).split('\n')[0] })
  }
}
await browser.close()
process.exit(0)
