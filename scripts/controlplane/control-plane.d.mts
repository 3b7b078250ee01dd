// Types of control-plane.mjs for TypeScript callers (test/operator/support).
export interface ControlPlane {
  dir: string;
  apiserverPort: number;
  etcdPort: number;
  server: string;
  kubeconfigPath: string;
  pem: { ca: string; cert: string; key: string };
  pids(): number[];
  stop(): Promise<void>;
}
export const CRD_FILE: string;
export function freePort(): Promise<number>;
export function startControlPlane(options?: {
  stateDir?: string;
  detached?: boolean;
  installCrd?: boolean;
  extraApiserverArgs?: string[];
}): Promise<ControlPlane>;
export function installCrd(cp: ControlPlane, crdYaml?: string): Promise<void>;
export function adminRequest(
  cp: ControlPlane,
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
): Promise<{ status: number; body: string }>;
