"""Plans: a budget solved over a profile — synchronously when the profile exists, else by a job."""
