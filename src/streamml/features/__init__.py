"""Point-in-time features: the one definition (:mod:`.spec`) and its Spark transforms (:mod:`.spark`)."""
