"""`bridge demo`: plays one conversation as a new customer against a running stack (`make dev`)
and shows, live, what the inbox would see: the stored messages, the bot typing, its replies with
their delays, delivery statuses and the handoff to a human. Exits 0 only when every step was
observed.

    script.py   the conversation: its steps and what each must produce
    customer.py signed webhooks, as Meta posts a customer's messages
    watch.py    what happens, seen through Realtime (typing, Postgres Changes) and PostgREST
    view.py     the terminal: a live rich view, or plain lines for logs
    run.py      plays the steps, waits for each expectation, says which one was missed
"""
