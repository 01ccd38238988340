"""The relay's registry: its state directory, the tokens and identities it issued, its clusters."""
