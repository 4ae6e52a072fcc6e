export interface Shared {
  id: string;
}
