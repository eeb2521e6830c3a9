"""labctl's commands: `app` holds the group and main(); one module per group of commands;
`shared` what they all use."""
