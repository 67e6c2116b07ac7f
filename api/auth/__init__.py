"""Who is calling and what they may do: principals with a role and a customer/region scope
(principal.py, permissions.py), proved by a bearer JWT — issued here for local users
(users.py, tokens.py) or by an enterprise identity provider (oidc.py) — or by an API key
(apikeys.py)."""
