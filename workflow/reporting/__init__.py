"""Reports: one document model rendered to Markdown and HTML, with its tables and charts."""
