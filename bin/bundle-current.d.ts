/** Whether dist/cli/ was built from exactly the files on disk now (bin/bundle-current.js). */
export declare const bundleIsCurrent: (root: URL) => boolean
