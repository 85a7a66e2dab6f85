"""Results and what is made of them: writers, subtitles, batch jobs."""
