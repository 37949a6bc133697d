// The AssemblyScript SDK of igord, importable from an agent project as `igord/sdk/as`
// (asc resolves `igord/sdk/as` to node_modules/igord/sdk/as/index.ts). The SDK itself is
// agents-as/sdk/igor.ts; docs/ABI.md is the contract.
export * from "../../agents-as/sdk/igor";
