// The gallery's storage: IndexedDB in this browser, so images and their parameters
// survive a reload (and stay private to this browser; the server keeps no gallery).

const DB_NAME = "sd-playground";
const STORE = "images";
let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => {
        const store = request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
        store.createIndex("created", "created");
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  return opening;
}

async function run(mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(STORE, mode);
    const result = work(transaction.objectStore(STORE));
    transaction.oncomplete = () => resolve(result.result);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error || new Error("storage aborted (disk full?)"));
  });
}

/** item: {blob, kind, params, infotext, created}; returns the new id. */
export function addItem(item) {
  return run("readwrite", (store) => store.add(item));
}

/** Every item, newest first. */
export async function allItems() {
  const items = await run("readonly", (store) => store.getAll());
  return items.sort((a, b) => b.created - a.created || b.id - a.id);
}

export function deleteItem(id) {
  return run("readwrite", (store) => store.delete(id));
}

export function clearItems() {
  return run("readwrite", (store) => store.clear());
}
