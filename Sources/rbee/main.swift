import RbeeKeeper

await RbeeCommand.run()
