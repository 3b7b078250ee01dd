// Types of node.mjs for TypeScript callers (test/k8s).
export const NODE_NAME: string;
export const BRIDGE: string;
export const NODE_IP: string;
export const POD_CIDR: string;
export const SERVICE_CIDR: string;
export const PAUSE_IMAGE: string;
export const HELPER_IMAGE: string;
export function nodeDirs(): {
  base: string;
  state: string;
  run: string;
  snapshot: string;
  stateFile: string;
  images: string;
};
