-- =============================================================================================
-- Demo data for local development (`supabase db reset`, `bridge db apply --seed`).
-- Fixed ids and `on conflict do nothing`: applying it again changes nothing.
--
-- Demo Store: WhatsApp number 1000000000000001 (Meta), AI agent on with the default engine,
-- team "Ventas" with two online agents and one offline. The channel has no stored credentials,
-- so the bridge's environment (WHATSAPP_APP_SECRET, WHATSAPP_ACCESS_TOKEN, ...) applies.
-- Every demo user signs in with the password `demo-password` (email confirmed; bcrypt as
-- Supabase Auth stores it; token columns '' as Auth needs them).
--
-- Other Shop: a second workspace (owner dave@other-shop.test, no WhatsApp channel), so a member
-- of one workspace can be seen not to reach the other's rows.
-- =============================================================================================

-- `instance_id` is the nil uuid Supabase Auth looks users up by.
insert into auth.users (
  instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  confirmation_token, recovery_token, email_change_token_new, email_change,
  email_change_token_current, phone_change, phone_change_token, reauthentication_token,
  raw_app_meta_data, raw_user_meta_data, created_at, updated_at
)
select '00000000-0000-0000-0000-000000000000', u.id::uuid, 'authenticated', 'authenticated',
       u.email, '$2a$10$5CVt3caLmr2rLJ3.6vnQUOK7oT/9HCJHB/BqRMY3Kc93rglJ5i96a', now(),
       '', '', '', '', '', '', '', '',
       '{"provider": "email", "providers": ["email"]}', u.meta::jsonb, now(), now()
from (values
  ('00000000-0000-4000-8000-000000000001', 'owner@demo-store.test',
   '{"full_name": "Olivia Owner"}'),
  ('00000000-0000-4000-8000-000000000002', 'ana@demo-store.test',
   '{"full_name": "Ana Agent"}'),
  ('00000000-0000-4000-8000-000000000003', 'bruno@demo-store.test',
   '{"full_name": "Bruno Agent"}'),
  ('00000000-0000-4000-8000-000000000004', 'carla@demo-store.test',
   '{"full_name": "Carla Agent (offline)"}'),
  ('00000000-0000-4000-8000-000000000005', 'dave@other-shop.test',
   '{"full_name": "Dave Owner"}')
) as u(id, email, meta)
on conflict do nothing;

-- The owner's membership is added by the workspaces trigger.
insert into public.workspaces (id, name, slug, owner_id)
values ('10000000-0000-4000-8000-000000000001', 'Demo Store', 'demo-store',
        '00000000-0000-4000-8000-000000000001')
on conflict do nothing;

insert into public.workspace_members (id, workspace_id, user_id, role)
values
  ('11000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000002', 'agent'),
  ('11000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000003', 'agent'),
  ('11000000-0000-4000-8000-000000000004', '10000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000004', 'agent')
on conflict do nothing;

insert into public.whatsapp_channels (id, workspace_id, phone_number_id, display_phone_number, provider)
values ('20000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001',
        '1000000000000001', '+57 300 000 0001', 'meta')
on conflict do nothing;

-- The bot waits 1.5 s after a customer's latest message, so what they type in a burst (one
-- webhook each) is answered as one turn.
insert into public.workspace_agent_config
  (workspace_id, agent_enabled, conversational_agent_id, reply_window_ms)
values ('10000000-0000-4000-8000-000000000001', true, 'somnio-sales-v1', 1500)
on conflict do nothing;

insert into public.teams (id, workspace_id, name, is_default)
values ('30000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', 'Ventas', true)
on conflict do nothing;

insert into public.team_members (id, team_id, user_id, is_online)
values
  ('31000000-0000-4000-8000-000000000002', '30000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000002', true),
  ('31000000-0000-4000-8000-000000000003', '30000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000003', true),
  ('31000000-0000-4000-8000-000000000004', '30000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000004', false)
on conflict do nothing;

-- ---------------------------------------------------------------------------------------------
-- Other Shop: another tenant, with its own owner.
-- ---------------------------------------------------------------------------------------------
insert into public.workspaces (id, name, slug, owner_id)
values ('10000000-0000-4000-8000-000000000002', 'Other Shop', 'other-shop',
        '00000000-0000-4000-8000-000000000005')
on conflict do nothing;
